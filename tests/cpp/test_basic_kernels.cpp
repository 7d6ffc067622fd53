// dot, matvec, rmsnorm and softmax: every runnable path against a double-precision reference.
// Tolerances: a float32 sum of n products has error at most about n * eps32 * sum|a_i b_i| whatever the order
// (the classic gamma_n bound); we use that bound for dot/matvec, and for rmsnorm/softmax a small multiple of
// eps32 relative to the output scale (each output is one rounding of a well-conditioned expression).
#include <algorithm>
#include <cmath>
#include <limits>

#include "basic_kernels.h"
#include "test_main.h"

namespace {

using edgellm::SimdPath;
using edgellm_test::expect_close;

constexpr double kEps32 = std::numeric_limits<float>::epsilon();
const std::size_t kSizes[] = {1, 7, 8, 31, 63, 65, 1000, 4097};

int test_dot(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    auto a = edgellm_test::random_normal(n, 1000 + n);
    auto b = edgellm_test::random_normal(n, 2000 + n);
    double ref = 0, abs_sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ref += double(a[i]) * b[i];
      abs_sum += std::fabs(double(a[i]) * b[i]);
    }
    const double got = edgellm::cpu::dot_f32(a.data(), b.data(), n, path);
    failures += expect_close("dot_f32", path, n, got, ref, n * kEps32 * abs_sum + 1e-30);
  }
  return failures;
}

int test_matvec(SimdPath path) {
  int failures = 0;
  const std::size_t shapes[][2] = {{1, 1}, {3, 7}, {65, 63}, {17, 1000}, {5, 4097}};
  for (const auto& s : shapes) {
    const std::size_t rows = s[0], cols = s[1];
    auto w = edgellm_test::random_normal(rows * cols, 3000 + rows);
    auto x = edgellm_test::random_normal(cols, 4000 + cols);
    std::vector<float> y(rows, std::numeric_limits<float>::quiet_NaN());
    edgellm::cpu::matvec_f32(w.data(), x.data(), y.data(), rows, cols, path);
    for (std::size_t r = 0; r < rows; ++r) {
      double ref = 0, abs_sum = 0;
      for (std::size_t c = 0; c < cols; ++c) {
        ref += double(w[r * cols + c]) * x[c];
        abs_sum += std::fabs(double(w[r * cols + c]) * x[c]);
      }
      failures += expect_close("matvec_f32", path, r, y[r], ref, cols * kEps32 * abs_sum + 1e-30);
    }
  }
  return failures;
}

int test_rmsnorm(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    const std::size_t rows = 3;
    auto x = edgellm_test::random_normal(rows * n, 5000 + n);
    auto w = edgellm_test::random_normal(n, 6000 + n);
    std::vector<float> y(rows * n, std::numeric_limits<float>::quiet_NaN());
    edgellm::cpu::rmsnorm_f32(x.data(), w.data(), y.data(), rows, n, 1e-5f, path);
    for (std::size_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (std::size_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
      const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
      for (std::size_t i = 0; i < n; ++i) {
        const double ref = x[r * n + i] * inv * w[i];
        failures += expect_close("rmsnorm_f32", path, r * n + i, y[r * n + i], ref,
                                 (n + 8) * kEps32 * std::fabs(ref) + 1e-30);
      }
    }
  }
  return failures;
}

int test_softmax(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    auto x = edgellm_test::random_normal(n, 7000 + n);
    for (float& v : x) v *= 8.0f;  // a wide range of exponents
    std::vector<float> y(n, std::numeric_limits<float>::quiet_NaN());
    edgellm::cpu::softmax_f32(x.data(), y.data(), 1, n, path);
    const double mx = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (float v : x) sum += std::exp(double(v) - mx);
    for (std::size_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[i]) - mx) / sum;
      // exp and the sum of n terms: a few ulp each plus the sum's n * eps, relative to the largest output.
      failures += expect_close("softmax_f32", path, i, y[i], ref, (n + 16) * kEps32 * ref + 1e-7 * kEps32);
    }
  }
  return failures;
}

}  // namespace

int test_basic_kernels() {
  int failures = 0;
  for (SimdPath path : edgellm_test::runnable_paths()) {
    failures += test_dot(path) + test_matvec(path) + test_rmsnorm(path) + test_softmax(path);
  }
  return failures;
}
