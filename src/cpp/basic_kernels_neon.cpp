// NEON path of basic_kernels.h: 4-wide lanes, 4 independent accumulators in the reductions; scalar tails.
#include <cmath>
#include <limits>

#include "basic_kernels_impl.h"
#include "simd/neon.h"

namespace edgellm::cpu::neon {

using edgellm::neon::exp_ps;
using edgellm::neon::hmax;
using edgellm::neon::hsum;

float dot_f32(const float* a, const float* b, std::size_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  float32x4_t acc2 = vdupq_n_f32(0.0f), acc3 = vdupq_n_f32(0.0f);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    acc2 = vfmaq_f32(acc2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    acc3 = vfmaq_f32(acc3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
  float acc = hsum(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
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
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv_rms), vld1q_f32(weight + i)));
    }
    for (; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
  }
}

void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    float32x4_t vmax = vdupq_n_f32(-std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float max_x = hmax(vmax);
    for (; i < n; ++i) max_x = std::fmax(max_x, x[i]);
    if (std::isinf(max_x) && max_x < 0) {  // all -inf: no distribution (see basic_kernels.h)
      for (i = 0; i < n; ++i) y[i] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float32x4_t vmax_b = vdupq_n_f32(max_x);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
      float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(x + i), vmax_b));
      vst1q_f32(y + i, e);
      vsum = vaddq_f32(vsum, e);
    }
    float sum = hsum(vsum);
    for (; i < n; ++i) {
      y[i] = std::exp(x[i] - max_x);
      sum += y[i];
    }
    const float inv_sum = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), inv_sum));
    for (; i < n; ++i) y[i] *= inv_sum;
  }
}

}  // namespace edgellm::cpu::neon
