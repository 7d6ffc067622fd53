// Per-path implementations of activations.h; only activations.cpp (the dispatcher) and the tests call these.
// rope_*: the dispatcher passes the per-call tables: Normal: cos_dup[head_dim] = (c0, c0, c1, c1, ...),
// sin_alt[head_dim] = (-s0, s0, -s1, s1, ...); Neox: cos[head_dim/2], sin[head_dim/2].
#pragma once

#include <cstddef>

#define EDGELLM_ACTIVATIONS_DECLARE(ns)                                                                     \
  namespace ns {                                                                                            \
  void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,   \
                     std::size_t n, float eps);                                                             \
  void silu_f32(const float* x, float* y, std::size_t n);                                                  \
  void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n);                            \
  void rope_normal_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_dup,           \
                       const float* sin_alt);                                                               \
  void rope_neox_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_half,           \
                     const float* sin_half);                                                                \
  std::size_t argmax_f32(const float* x, std::size_t n);                                                   \
  }

namespace edgellm::cpu {
EDGELLM_ACTIVATIONS_DECLARE(scalar)
EDGELLM_ACTIVATIONS_DECLARE(avx2)
EDGELLM_ACTIVATIONS_DECLARE(neon)
}  // namespace edgellm::cpu

#undef EDGELLM_ACTIVATIONS_DECLARE
