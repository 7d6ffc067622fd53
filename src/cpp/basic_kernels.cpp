#include "basic_kernels.h"

#include <stdexcept>
#include <string>

#include "basic_kernels_impl.h"
#include "simd/dispatch.h"

namespace edgellm::cpu {

float dot_f32(const float* a, const float* b, std::size_t n, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, , dot_f32(a, b, n))
}

void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, , matvec_f32(w, x, y, rows, cols))
}

void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps,
                 SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, , rmsnorm_f32(x, weight, y, rows, n, eps))
}

void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, , softmax_f32(x, y, rows, n))
}

}  // namespace edgellm::cpu
