#include "activations.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "activations_impl.h"
#include "simd/dispatch.h"

namespace edgellm::cpu {

void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,
                   std::size_t n, float eps, SimdPath path) {
  if (n == 0) throw std::invalid_argument("layernorm: rows must have at least one element");
  if (!(eps >= 0.0f) || std::isinf(eps)) throw std::invalid_argument("layernorm: eps must be finite and >= 0");
  EDGELLM_SIMD_DISPATCH(path, , layernorm_f32(x, weight, bias, y, rows, n, eps))
}

void silu_f32(const float* x, float* y, std::size_t n, SimdPath path) { EDGELLM_SIMD_DISPATCH(path, , silu_f32(x, y, n)) }

void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, , swiglu_f32(gate, up, y, n))
}

void rope_f32(float* x, std::size_t n_heads, std::size_t head_dim, std::size_t pos, double theta, RopeMode mode,
              SimdPath path) {
  if (head_dim == 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("rope: head_dim must be even and > 0, got " + std::to_string(head_dim));
  }
  if (!(theta > 0.0) || std::isinf(theta)) throw std::invalid_argument("rope: theta (base) must be finite and > 0");
  require_simd_path(path);
  const std::size_t half = head_dim / 2;
  // Angles in double: pos * theta^(-2i/d) exactly rounded once to float cos/sin.
  std::vector<float> table(2 * head_dim);
  float* c = table.data();
  float* s = table.data() + head_dim;
  for (std::size_t i = 0; i < half; ++i) {
    const double angle =
        static_cast<double>(pos) * std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const float ci = static_cast<float>(std::cos(angle)), si = static_cast<float>(std::sin(angle));
    if (mode == RopeMode::Normal) {
      c[2 * i] = ci;
      c[2 * i + 1] = ci;
      s[2 * i] = -si;
      s[2 * i + 1] = si;
    } else {
      c[i] = ci;
      s[i] = si;
    }
  }
  if (mode == RopeMode::Normal) {
    EDGELLM_SIMD_DISPATCH(path, , rope_normal_f32(x, n_heads, head_dim, c, s))
  } else {
    EDGELLM_SIMD_DISPATCH(path, , rope_neox_f32(x, n_heads, head_dim, c, s))
  }
}

std::size_t argmax_f32(const float* x, std::size_t n, SimdPath path) {
  if (n == 0) throw std::invalid_argument("argmax: x must have at least one element");
  EDGELLM_SIMD_DISPATCH(path, , argmax_f32(x, n))
}

}  // namespace edgellm::cpu
