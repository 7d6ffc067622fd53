// Per-path implementations of basic_kernels.h; only basic_kernels.cpp (the dispatcher) and the tests call these.
#pragma once

#include <cstddef>

#define EDGELLM_BASIC_KERNELS_DECLARE(ns)                                                                       \
  namespace ns {                                                                                                \
  float dot_f32(const float* a, const float* b, std::size_t n);                                                 \
  void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols);               \
  void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps); \
  void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n);                                \
  }

namespace edgellm::cpu {
EDGELLM_BASIC_KERNELS_DECLARE(scalar)
EDGELLM_BASIC_KERNELS_DECLARE(avx2)
EDGELLM_BASIC_KERNELS_DECLARE(neon)
}  // namespace edgellm::cpu

#undef EDGELLM_BASIC_KERNELS_DECLARE
