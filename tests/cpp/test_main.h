// A minimal test framework for the C++ test program (edgellm_cpp_tests), which checks every compiled SIMD path
// against the scalar path and a double-precision reference. The same program runs natively (x86-64: AVX2) and
// under qemu-aarch64 (NEON). Each kernel family adds `int test_<family>()` (returns its failure count), declares
// it below, and calls it from test_main.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "simd/simd.h"

namespace edgellm_test {

// Paths compiled in and runnable on this CPU (scalar first).
inline std::vector<edgellm::SimdPath> runnable_paths() {
  std::vector<edgellm::SimdPath> paths;
  for (edgellm::SimdPath p : edgellm::compiled_simd_paths()) {
    if (edgellm::simd_path_supported(p)) paths.push_back(p);
  }
  return paths;
}

// Fresh normal(0, 1) floats; the seed makes a failure reproducible.
inline std::vector<float> random_normal(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Counts and prints a failure when |got - ref| > tol (NaN never passes).
inline int expect_close(const char* what, edgellm::SimdPath path, std::size_t index, double got, double ref,
                        double tol) {
  const double err = std::fabs(got - ref);
  if (!(err <= tol)) {
    std::printf("FAIL %s [%s] index %zu: got %.9g, reference %.9g, |error| %.3g > tolerance %.3g\n", what,
                edgellm::simd_path_name(path), index, got, ref, err, tol);
    return 1;
  }
  return 0;
}

}  // namespace edgellm_test

// Families (one definition each, in tests/cpp/test_<family>.cpp).
int test_basic_kernels();
int test_activations();
int test_kv_cache();
int test_quant();
int test_ternary();
int test_engine();
