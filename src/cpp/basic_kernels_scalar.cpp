// Scalar reference path of basic_kernels.h: straightforward loops, one accumulator, in index order.
#include <cmath>
#include <limits>

#include "basic_kernels_impl.h"

namespace edgellm::cpu::scalar {

float dot_f32(const float* a, const float* b, std::size_t n) {
  float acc = 0.0f;
  for (std::size_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) y[r] = dot_f32(w + r * cols, x, cols);
}

void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    float sum_sq = 0.0f;
    for (std::size_t i = 0; i < n; ++i) sum_sq += x[i] * x[i];
    const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    for (std::size_t i = 0; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
  }
}

void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    float max_x = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) max_x = std::fmax(max_x, x[i]);
    float sum = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
      y[i] = std::exp(x[i] - max_x);
      sum += y[i];
    }
    const float inv_sum = 1.0f / sum;
    for (std::size_t i = 0; i < n; ++i) y[i] *= inv_sum;
  }
}

}  // namespace edgellm::cpu::scalar
