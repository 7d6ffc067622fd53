// Scalar reference path of activations.h: straightforward loops in index order.
#include <cmath>

#include "activations_impl.h"

namespace edgellm::cpu::scalar {

void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,
                   std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    float sum = 0.0f;
    for (std::size_t i = 0; i < n; ++i) sum += x[i];
    const float mean = sum / static_cast<float>(n);
    float sum_sq = 0.0f;
    for (std::size_t i = 0; i < n; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
    const float inv_std = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    for (std::size_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv_std * weight[i] + bias[i];
  }
}

void silu_f32(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rope_normal_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_dup,
                     const float* sin_alt) {
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    for (std::size_t i = 0; i < head_dim; i += 2) {
      const float x0 = x[i], x1 = x[i + 1];
      x[i] = x0 * cos_dup[i] + x1 * sin_alt[i];          // x0 cos - x1 sin
      x[i + 1] = x1 * cos_dup[i + 1] + x0 * sin_alt[i + 1];  // x1 cos + x0 sin
    }
  }
}

void rope_neox_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_half,
                   const float* sin_half) {
  const std::size_t half = head_dim / 2;
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    for (std::size_t i = 0; i < half; ++i) {
      const float x0 = x[i], x1 = x[i + half];
      x[i] = x0 * cos_half[i] - x1 * sin_half[i];
      x[i + half] = x0 * sin_half[i] + x1 * cos_half[i];
    }
  }
}

std::size_t argmax_f32(const float* x, std::size_t n) {
  std::size_t best = 0;
  if (std::isnan(x[0])) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if (std::isnan(x[i])) return i;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

}  // namespace edgellm::cpu::scalar
