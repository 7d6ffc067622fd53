#include "basic_kernels.h"

#include <stdexcept>
#include <string>

#include "basic_kernels_impl.h"

namespace edgellm::cpu {
namespace {

void require_supported(SimdPath path) {
  if (!simd_path_supported(path)) {
    throw std::invalid_argument(std::string("simd path '") + simd_path_name(path) +
                                "' is not supported on this build and CPU");
  }
}

}  // namespace

// The switch names each path once; a path that is not compiled in cannot be reached because
// require_supported() rejects it first, and its symbols are never referenced.
#if defined(EDGELLM_HAVE_AVX2)
#define EDGELLM_CASE_AVX2(call) \
  case SimdPath::Avx2: return avx2::call;
#else
#define EDGELLM_CASE_AVX2(call)
#endif
#if defined(EDGELLM_HAVE_NEON)
#define EDGELLM_CASE_NEON(call) \
  case SimdPath::Neon: return neon::call;
#else
#define EDGELLM_CASE_NEON(call)
#endif
#define EDGELLM_DISPATCH(path, call)  \
  require_supported(path);            \
  switch (path) {                     \
    EDGELLM_CASE_AVX2(call)           \
    EDGELLM_CASE_NEON(call)           \
    default: return scalar::call;     \
  }

float dot_f32(const float* a, const float* b, std::size_t n, SimdPath path) {
  EDGELLM_DISPATCH(path, dot_f32(a, b, n))
}

void matvec_f32(const float* w, const float* x, float* y, std::size_t rows, std::size_t cols, SimdPath path) {
  EDGELLM_DISPATCH(path, matvec_f32(w, x, y, rows, cols))
}

void rmsnorm_f32(const float* x, const float* weight, float* y, std::size_t rows, std::size_t n, float eps,
                 SimdPath path) {
  EDGELLM_DISPATCH(path, rmsnorm_f32(x, weight, y, rows, n, eps))
}

void softmax_f32(const float* x, float* y, std::size_t rows, std::size_t n, SimdPath path) {
  EDGELLM_DISPATCH(path, softmax_f32(x, y, rows, n))
}

}  // namespace edgellm::cpu
