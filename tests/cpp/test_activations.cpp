// layernorm, silu, swiglu, rope and argmax: every runnable path against a double-precision reference.
// Tolerances (eps32 = float32 epsilon), as in tests/test_activations.py:
//   layernorm: (n + 16) * eps32 relative to |normalised * weight| + |bias| + 1 (float32 sums of n terms);
//   silu/swiglu: 8 * eps32 relative (exp ~2 ulp, one division) + |x| * 1e-37 + 1e-37 absolute (exp_ps clamps);
//   rope: 4 * eps32 relative to |a| + |b| of the rotated pair; argmax: exact.
#include <cmath>
#include <limits>

#include "activations.h"
#include "test_main.h"

namespace {

using edgellm::SimdPath;
using edgellm_test::expect_close;

constexpr double kEps32 = std::numeric_limits<float>::epsilon();
const std::size_t kSizes[] = {1, 7, 8, 31, 63, 65, 1000, 4097};

int test_layernorm(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    const std::size_t rows = 3;
    auto x = edgellm_test::random_normal(rows * n, 100 + n);
    for (float& v : x) v = v * 3.0f + 1.5f;
    auto w = edgellm_test::random_normal(n, 200 + n);
    auto b = edgellm_test::random_normal(n, 300 + n);
    std::vector<float> y(rows * n, std::numeric_limits<float>::quiet_NaN());
    edgellm::cpu::layernorm_f32(x.data(), w.data(), b.data(), y.data(), rows, n, 1e-5f, path);
    for (std::size_t r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (std::size_t i = 0; i < n; ++i) mean += x[r * n + i];
      mean /= n;
      for (std::size_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
      var /= n;
      const double inv = 1.0 / std::sqrt(var + 1e-5);
      for (std::size_t i = 0; i < n; ++i) {
        const double t = (x[r * n + i] - mean) * inv * w[i];
        const double ref = t + b[i];
        failures += expect_close("layernorm_f32", path, r * n + i, y[r * n + i], ref,
                                 (n + 16) * kEps32 * (std::fabs(t) + std::fabs(b[i]) + 1.0));
      }
    }
  }
  return failures;
}

int test_silu_swiglu(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    auto x = edgellm_test::random_normal(n, 400 + n);
    for (float& v : x) v *= 6.0f;
    if (n > 4) x[0] = -100.0f, x[1] = 100.0f, x[2] = -88.5f, x[3] = 0.0f;
    auto up = edgellm_test::random_normal(n, 500 + n);
    std::vector<float> y(n), z(n);
    edgellm::cpu::silu_f32(x.data(), y.data(), n, path);
    edgellm::cpu::swiglu_f32(x.data(), up.data(), z.data(), n, path);
    for (std::size_t i = 0; i < n; ++i) {
      const double s = double(x[i]) / (1.0 + std::exp(-double(x[i])));
      const double abs_tol = std::fabs(double(x[i])) * 1e-37 + 1e-37;
      failures += expect_close("silu_f32", path, i, y[i], s, 8 * kEps32 * std::fabs(s) + abs_tol);
      failures += expect_close("swiglu_f32", path, i, z[i], s * up[i],
                               8 * kEps32 * std::fabs(s * up[i]) + abs_tol * std::fabs(double(up[i])) + 1e-37);
    }
  }
  return failures;
}

int test_rope(SimdPath path) {
  int failures = 0;
  const std::size_t dims[] = {2, 6, 14, 64, 128};
  const std::size_t positions[] = {0, 1, 17, 4095, 131071};
  for (int m = 0; m < 2; ++m) {
    const auto mode = m == 0 ? edgellm::cpu::RopeMode::Normal : edgellm::cpu::RopeMode::Neox;
    for (std::size_t d : dims) {
      for (std::size_t pos : positions) {
        const std::size_t heads = 5, half = d / 2;
        auto x = edgellm_test::random_normal(heads * d, 600 + d + pos);
        std::vector<float> y = x;
        edgellm::cpu::rope_f32(y.data(), heads, d, pos, 500000.0, mode, path);
        for (std::size_t h = 0; h < heads; ++h) {
          for (std::size_t i = 0; i < half; ++i) {
            const std::size_t ia = m == 0 ? 2 * i : i, ib = m == 0 ? 2 * i + 1 : i + half;
            const double a = x[h * d + ia], b = x[h * d + ib];
            const double ang = double(pos) * std::pow(500000.0, -2.0 * double(i) / double(d));
            const double tol = 4 * kEps32 * (std::fabs(a) + std::fabs(b)) + 1e-30;
            failures += expect_close(m == 0 ? "rope_normal" : "rope_neox", path, h * d + ia, y[h * d + ia],
                                     a * std::cos(ang) - b * std::sin(ang), tol);
            failures += expect_close(m == 0 ? "rope_normal" : "rope_neox", path, h * d + ib, y[h * d + ib],
                                     a * std::sin(ang) + b * std::cos(ang), tol);
          }
        }
      }
    }
  }
  return failures;
}

int test_argmax(SimdPath path) {
  int failures = 0;
  for (std::size_t n : kSizes) {
    auto x = edgellm_test::random_normal(n, 700 + n);
    std::size_t ref = 0;
    for (std::size_t i = 1; i < n; ++i) {
      if (x[i] > x[ref]) ref = i;
    }
    failures +=
        expect_close("argmax_f32", path, n, double(edgellm::cpu::argmax_f32(x.data(), n, path)), double(ref), 0);
    x[n / 3] = 10.0f;
    x[n - 1] = 10.0f;  // a tie: the first index wins
    failures += expect_close("argmax_f32 tie", path, n, double(edgellm::cpu::argmax_f32(x.data(), n, path)),
                             double(n / 3), 0);
    x[n - 1 - n / 4] = std::numeric_limits<float>::quiet_NaN();  // NaN: its index, as numpy
    failures += expect_close("argmax_f32 nan", path, n, double(edgellm::cpu::argmax_f32(x.data(), n, path)),
                             double(n - 1 - n / 4), 0);
    std::vector<float> ninf(n, -std::numeric_limits<float>::infinity());
    failures +=
        expect_close("argmax_f32 -inf", path, n, double(edgellm::cpu::argmax_f32(ninf.data(), n, path)), 0, 0);
  }
  return failures;
}

}  // namespace

int test_activations() {
  int failures = 0;
  for (SimdPath path : edgellm_test::runnable_paths()) {
    failures += test_layernorm(path);
    failures += test_silu_swiglu(path);
    failures += test_rope(path);
    failures += test_argmax(path);
  }
  return failures;
}
