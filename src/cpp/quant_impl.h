// Per-path implementations of quant.h; only quant.cpp (the dispatcher) calls these. Each works on whole blocks:
// `n_blocks` consecutive blocks of one row (dot products) or of a buffer (dequantize). For the Q8_0-activation
// dot products, xs[b] = d_x * sum(q_x) of activation block b in float32, computed once per activation vector by
// the dispatcher (only Q4_1 uses it: its min term is m_w * xs[b], like ggml's Q8_1 `s` but not rounded to f16).
#pragma once

#include <cstddef>
#include <cstdint>

#define EDGELLM_QUANT_DECLARE(ns)                                                                          \
  namespace ns {                                                                                           \
  void dequantize_q4_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks);                        \
  void dequantize_q4_1(const std::uint8_t* blocks, float* y, std::size_t n_blocks);                        \
  void dequantize_q8_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks);                        \
  float dot_q4_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks);                         \
  float dot_q4_1_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks);                         \
  float dot_q8_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks);                         \
  float dot_q4_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks);                \
  float dot_q4_1_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks);                \
  float dot_q8_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks);                \
  }

namespace edgellm::cpu {
EDGELLM_QUANT_DECLARE(scalar)
EDGELLM_QUANT_DECLARE(avx2)
EDGELLM_QUANT_DECLARE(neon)
}  // namespace edgellm::cpu

#undef EDGELLM_QUANT_DECLARE
