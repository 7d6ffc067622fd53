// Ternary matvec: every runnable path and method against a double-precision reference, and the int8-LUT method
// bit for bit against the scalar path (its integer sums are exact and its double accumulation runs in the same
// order on every path). Tolerances: decode and the f32 LUT sum k (resp. kp/2) float32 terms: the gamma_n bound
// n * eps32 * sum|terms|. The int8 LUT: each lookup is off by at most s_b/2 (+ 2^-16 s_b for float rounding), s_b the
// block's table scale; see ternary.h and edgellm_ext.ternary.lut_int8_error_bound.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "ternary.h"
#include "test_main.h"

namespace {

using edgellm::SimdPath;
using edgellm::cpu::TernaryMethod;
using edgellm_test::expect_close;

constexpr double kEps32 = std::numeric_limits<float>::epsilon();

struct Case {
  std::size_t m, k, kp;
  std::vector<std::int8_t> w;  // [m, kp], zero padded
  std::vector<std::uint8_t> packed;
  std::vector<float> scale, x;
};

Case make_case(std::size_t m, std::size_t k, std::uint32_t seed) {
  Case c;
  c.m = m;
  c.k = k;
  c.kp = edgellm::cpu::ternary_padded_k(k);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> code(0, 2);
  c.w.assign(m * c.kp, 0);
  c.packed.assign(m * c.kp / 4, 0);
  for (std::size_t r = 0; r < m; ++r) {
    for (std::size_t i = 0; i < c.kp; ++i) {
      const int q = i < k ? code(gen) : 1;
      c.w[r * c.kp + i] = static_cast<std::int8_t>(q - 1);
      c.packed[r * c.kp / 4 + i / 4] |= static_cast<std::uint8_t>(q << (2 * (i % 4)));
    }
  }
  c.scale = edgellm_test::random_normal(m, seed + 1);
  c.x = edgellm_test::random_normal(k, seed + 2);
  return c;
}

int check_case(const Case& c, SimdPath path, int threads) {
  int failures = 0;
  std::vector<float> xp(c.kp, 0.0f);
  std::memcpy(xp.data(), c.x.data(), c.k * sizeof(float));
  std::vector<double> s_b(c.kp / 32, 0.0);
  for (std::size_t b = 0; b < s_b.size(); ++b) {
    float amax = 0.0f;  // in float, as ternary.cpp computes it
    for (std::size_t p = 16 * b; p < 16 * b + 16; ++p) {
      const float a = std::fabs(xp[2 * p]) + std::fabs(xp[2 * p + 1]);
      amax = a > amax ? a : amax;
    }
    s_b[b] = amax / 127.0;
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y_dec(c.m, nan), y_lut(c.m, nan), y_i8(c.m, nan), y_i8_scalar(c.m, nan);
  edgellm::cpu::ternary_matvec(c.packed.data(), c.scale.data(), c.x.data(), y_dec.data(), c.m, c.k,
                               TernaryMethod::Decode, path, threads);
  edgellm::cpu::ternary_matvec(c.packed.data(), c.scale.data(), c.x.data(), y_lut.data(), c.m, c.k,
                               TernaryMethod::LutF32, path, threads);
  edgellm::cpu::ternary_matvec(c.packed.data(), c.scale.data(), c.x.data(), y_i8.data(), c.m, c.k,
                               TernaryMethod::LutInt8, path, threads);
  edgellm::cpu::ternary_matvec(c.packed.data(), c.scale.data(), c.x.data(), y_i8_scalar.data(), c.m, c.k,
                               TernaryMethod::LutInt8, SimdPath::Scalar, 1);
  if (std::memcmp(y_i8.data(), y_i8_scalar.data(), c.m * sizeof(float)) != 0) {
    std::printf("FAIL ternary lut_int8 [%s] m=%zu k=%zu threads=%d: differs from scalar\n",
                edgellm::simd_path_name(path), c.m, c.k, threads);
    ++failures;
  }
  for (std::size_t r = 0; r < c.m; ++r) {
    double dot = 0, abs_sum = 0, lut_bound = 0;
    for (std::size_t i = 0; i < c.kp; ++i) {
      dot += c.w[r * c.kp + i] * double(xp[i]);
      abs_sum += std::fabs(c.w[r * c.kp + i] * double(xp[i]));
    }
    for (std::size_t p = 0; p < c.kp / 2; ++p) {  // pairs with a nonzero weight look up an inexact entry
      const bool nonzero = c.w[r * c.kp + 2 * p] != 0 || c.w[r * c.kp + 2 * p + 1] != 0;
      lut_bound += nonzero ? s_b[p / 16] : 0.0;
    }
    const double sc = c.scale[r], ref = sc * dot;
    failures += expect_close("ternary decode", path, r, y_dec[r], ref,
                             std::fabs(sc) * (c.k + 2) * kEps32 * abs_sum + kEps32 * std::fabs(ref) + 1e-30);
    failures += expect_close("ternary lut f32", path, r, y_lut[r], ref,
                             std::fabs(sc) * (c.kp + 2) * kEps32 * abs_sum + kEps32 * std::fabs(ref) + 1e-30);
    failures += expect_close("ternary lut int8", path, r, y_i8[r], ref,
                             std::fabs(sc) * lut_bound * (0.5 + 0x1p-16) + kEps32 * std::fabs(ref) + 1e-30);
  }
  return failures;
}

}  // namespace

int test_ternary() {
  int failures = 0;
  const std::size_t shapes[][2] = {{1, 1}, {7, 63}, {17, 65}, {16, 128}, {33, 1000}, {40, 4097}};
  for (SimdPath path : edgellm_test::runnable_paths()) {
    for (const auto& s : shapes) {
      const Case c = make_case(s[0], s[1], 500 + static_cast<std::uint32_t>(s[0] * 7 + s[1]));
      failures += check_case(c, path, 1) + check_case(c, path, 3);
    }
  }
  return failures;
}
