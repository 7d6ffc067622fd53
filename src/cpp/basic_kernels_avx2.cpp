// AVX2+FMA path of basic_kernels.h: 8-wide lanes, 4 independent accumulators in the reductions so that the
// FMA latency (4 cycles) is hidden; scalar tails.
#include <cmath>
#include <limits>

#include "basic_kernels_impl.h"
#include "simd/avx2.h"

namespace edgellm::cpu::avx2 {

using edgellm::avx2::exp_ps;
using edgellm::avx2::hmax;
using edgellm::avx2::hsum;

float dot_f32(const float* a, const float* b, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float acc = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) y[r] = dot_f32(w + r * cols, x, cols);
}

void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    const float sum_sq = dot_f32(x, x, n);
    const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    const __m256 scale = _mm256_set1_ps(inv_rms);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), scale);
      _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(weight + i)));
    }
    for (; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
  }
}

void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float max_x = hmax(vmax);
    for (; i < n; ++i) max_x = std::fmax(max_x, x[i]);
    if (std::isinf(max_x) && max_x < 0) {  // all -inf: no distribution (see basic_kernels.h)
      for (i = 0; i < n; ++i) y[i] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const __m256 vmax_b = _mm256_set1_ps(max_x);
    __m256 vsum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
      __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax_b));
      _mm256_storeu_ps(y + i, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    for (; i < n; ++i) {
      y[i] = std::exp(x[i] - max_x);
      sum += y[i];
    }
    const float inv_sum = 1.0f / sum;
    const __m256 inv = _mm256_set1_ps(inv_sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    for (; i < n; ++i) y[i] *= inv_sum;
  }
}

}  // namespace edgellm::cpu::avx2
