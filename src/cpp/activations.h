// Norms and activations for the decode path (float32): LayerNorm, SiLU, SwiGLU, rotary position embedding
// (RoPE) and argmax. RMSNorm and softmax live in basic_kernels.h.
//
// All arrays are contiguous float32; outputs may alias inputs element-for-element (y == x is allowed; partial
// overlap is not). Each function takes the SIMD path to run (simd/simd.h); an unsupported path, or an invalid
// size, throws std::invalid_argument before touching memory.
//
//   layernorm_f32: per row of n: mean = sum(x)/n, var = sum((x-mean)^2)/n (two passes: no cancellation),
//                  y = (x - mean) / sqrt(var + eps) * weight + bias.                       x, y: [rows, n]
//   silu_f32:      y = x / (1 + exp(-x)) = x * sigmoid(x).                                  x, y: [n]
//                  silu(+inf) = +inf; silu(-inf) is unspecified (NaN on the scalar path, -inf on SIMD paths
//                  whose exp clamps its argument); NaN propagates. For x < -88 the SIMD paths return about
//                  x * 4e-39 instead of a value even nearer 0 (absolute error < |x| * 1e-37).
//   swiglu_f32:    y = silu(gate) * up (the gated FFN of Llama-family models).             gate, up, y: [n]
//   rope_f32:      rotates pairs of x [n_heads, head_dim] in place by angle pos * theta^(-2i/head_dim) for
//                  pair i in [0, head_dim/2). head_dim must be even and > 0. Layouts:
//                    RopeMode::Normal (GPT-J / llama.cpp "normal", Llama GGUF weights): pairs (x[2i], x[2i+1]);
//                    RopeMode::Neox (GPT-NeoX / HF "rotate_half", Qwen2, SmolLM HF weights): pairs (x[i], x[i+d/2]).
//                  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos). The cos/sin table is computed in double once
//                  per call (shared by every path and head), so angle error does not grow with pos; the paths
//                  differ only in the float32 rotation arithmetic. No rope scaling (llama3/YaRN): callers that
//                  need it pass the scaled base or are not supported yet.
//   argmax_f32:    first index of the maximum of x [n], n >= 1. NaN: as numpy.argmax, the first NaN counts as
//                  the maximum and its index is returned (so a broken logits vector is detectable: x[i] is NaN).
#pragma once

#include <cstddef>

#include "simd/simd.h"

namespace edgellm::cpu {

enum class RopeMode { Normal, Neox };

void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,
                   std::size_t n, float eps, SimdPath path);
void silu_f32(const float* x, float* y, std::size_t n, SimdPath path);
void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n, SimdPath path);
void rope_f32(float* x, std::size_t n_heads, std::size_t head_dim, std::size_t pos, double theta, RopeMode mode,
              SimdPath path);
std::size_t argmax_f32(const float* x, std::size_t n, SimdPath path);

}  // namespace edgellm::cpu
