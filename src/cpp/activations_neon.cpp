// NEON path of activations.h (aarch64): 4-wide lanes, scalar tails (which use the scalar path's formulas).
#include <cmath>
#include <cstdint>

#include "activations_impl.h"
#include "simd/neon.h"

namespace edgellm::cpu::neon {

using edgellm::neon::exp_ps;
using edgellm::neon::hmax;
using edgellm::neon::hsum;

namespace {

float sum_f32(const float* x, std::size_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = vaddq_f32(acc0, vld1q_f32(x + i));
    acc1 = vaddq_f32(acc1, vld1q_f32(x + i + 4));
  }
  for (; i + 4 <= n; i += 4) acc0 = vaddq_f32(acc0, vld1q_f32(x + i));
  float s = hsum(vaddq_f32(acc0, acc1));
  for (; i < n; ++i) s += x[i];
  return s;
}

inline float32x4_t silu_ps(float32x4_t x) {
  const float32x4_t e = exp_ps(vnegq_f32(x));
  return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

}  // namespace

void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,
                   std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    const float mean = sum_f32(x, n) / static_cast<float>(n);
    const float32x4_t vmean = vdupq_n_f32(mean);
    float32x4_t acc = vdupq_n_f32(0.0f);
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const float32x4_t d = vsubq_f32(vld1q_f32(x + i), vmean);
      acc = vfmaq_f32(acc, d, d);
    }
    float sum_sq = hsum(acc);
    for (; i < n; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
    const float inv_std = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    const float32x4_t vinv = vdupq_n_f32(inv_std);
    for (i = 0; i + 4 <= n; i += 4) {
      const float32x4_t d = vmulq_f32(vsubq_f32(vld1q_f32(x + i), vmean), vinv);
      vst1q_f32(y + i, vfmaq_f32(vld1q_f32(bias + i), d, vld1q_f32(weight + i)));
    }
    for (; i < n; ++i) y[i] = (x[i] - mean) * inv_std * weight[i] + bias[i];
  }
}

void silu_f32(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, silu_ps(vld1q_f32(x + i)));
  for (; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(silu_ps(vld1q_f32(gate + i)), vld1q_f32(up + i)));
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rope_normal_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_dup,
                     const float* sin_alt) {
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    std::size_t i = 0;
    for (; i + 4 <= head_dim; i += 4) {
      const float32x4_t v = vld1q_f32(x + i);
      const float32x4_t swapped = vrev64q_f32(v);  // (x1, x0, x3, x2)
      vst1q_f32(x + i, vfmaq_f32(vmulq_f32(v, vld1q_f32(cos_dup + i)), swapped, vld1q_f32(sin_alt + i)));
    }
    for (; i < head_dim; i += 2) {
      const float x0 = x[i], x1 = x[i + 1];
      x[i] = x0 * cos_dup[i] + x1 * sin_alt[i];
      x[i + 1] = x1 * cos_dup[i + 1] + x0 * sin_alt[i + 1];
    }
  }
}

void rope_neox_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_half,
                   const float* sin_half) {
  const std::size_t half = head_dim / 2;
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    std::size_t i = 0;
    for (; i + 4 <= half; i += 4) {
      const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + half);
      const float32x4_t c = vld1q_f32(cos_half + i), s = vld1q_f32(sin_half + i);
      vst1q_f32(x + i, vfmsq_f32(vmulq_f32(a, c), b, s));
      vst1q_f32(x + i + half, vfmaq_f32(vmulq_f32(b, c), a, s));
    }
    for (; i < half; ++i) {
      const float x0 = x[i], x1 = x[i + half];
      x[i] = x0 * cos_half[i] - x1 * sin_half[i];
      x[i + half] = x0 * sin_half[i] + x1 * cos_half[i];
    }
  }
}

std::size_t argmax_f32(const float* x, std::size_t n) {
  float32x4_t vmax = vdupq_n_f32(-INFINITY);
  uint32x4_t nan_seen = vdupq_n_u32(0);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    nan_seen = vorrq_u32(nan_seen, vmvnq_u32(vceqq_f32(v, v)));  // x != x only for NaN
    vmax = vmaxq_f32(vmax, v);
  }
  bool has_nan = vmaxvq_u32(nan_seen) != 0;
  float m = has_nan ? 0.0f : hmax(vmax);
  for (; i < n; ++i) {
    if (std::isnan(x[i])) has_nan = true;
    else if (x[i] > m) m = x[i];
  }
  if (has_nan) {
    for (i = 0; i < n; ++i) {
      if (std::isnan(x[i])) return i;
    }
  }
  const float32x4_t target = vdupq_n_f32(m);
  for (i = 0; i + 4 <= n; i += 4) {
    const uint32x4_t eq = vceqq_f32(vld1q_f32(x + i), target);
    if (vmaxvq_u32(eq) != 0) {
      for (std::size_t k = i; k < i + 4; ++k) {
        if (x[k] == m) return k;
      }
    }
  }
  for (; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;  // unreachable: m is one of the elements
}

}  // namespace edgellm::cpu::neon
