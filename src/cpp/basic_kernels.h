// Basic f32 CPU kernels used by the decode path: dot product, matrix-vector product, RMSNorm, softmax.
//
// All arrays are contiguous float32. Accumulation is in float32; the scalar path accumulates in order with
// one accumulator, the SIMD paths in several vector lanes (a different, equally valid, summation order).
// Each function takes the SIMD path to run (see simd/simd.h); an unsupported path throws
// std::invalid_argument before touching memory.
#pragma once

#include <cstddef>

#include "simd/simd.h"

namespace edgellm::cpu {

// sum_i a[i] * b[i] over n elements.
float dot_f32(const float* a, const float* b, std::size_t n, SimdPath path);

// y[r] = sum_c w[r * cols + c] * x[c] for r < rows (w row-major [rows, cols]).
void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols, SimdPath path);

// For each of `rows` rows of length n: y = x / sqrt(mean(x^2) + eps) * weight.
void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps,
                 SimdPath path);

// For each of `rows` rows of length n: y = exp(x - max(x)) / sum(exp(x - max(x))). A row of all -inf gives NaN
// (as torch does): there is no distribution to return.
void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n, SimdPath path);

}  // namespace edgellm::cpu
