// The one SIMD dispatcher of the CPU kernel families. A family declares its per-path implementations in
// namespaces scalar::, avx2:: and neon:: (see basic_kernels_impl.h) and writes, in its public function,
//
//   EDGELLM_SIMD_DISPATCH(path, , dot_f32(a, b, n))      // calls scalar::/avx2::/neon::dot_f32(a, b, n)
//   EDGELLM_SIMD_DISPATCH(path, kv::, f32_to_f16_row(...)) // calls kv::scalar::... and so on
//
// It first rejects a path that is not compiled in or not supported by this CPU (std::invalid_argument), so the
// switch never reaches a path whose symbols do not exist in this build.
#pragma once

#include "simd/simd.h"

namespace edgellm {

// Throws std::invalid_argument naming the path when simd_path_supported(path) is false.
void require_simd_path(SimdPath path);

}  // namespace edgellm

#if defined(EDGELLM_HAVE_AVX2)
#define EDGELLM_SIMD_CASE_AVX2(prefix, call) \
  case ::edgellm::SimdPath::Avx2: return prefix avx2::call;
#else
#define EDGELLM_SIMD_CASE_AVX2(prefix, call)
#endif
#if defined(EDGELLM_HAVE_NEON)
#define EDGELLM_SIMD_CASE_NEON(prefix, call) \
  case ::edgellm::SimdPath::Neon: return prefix neon::call;
#else
#define EDGELLM_SIMD_CASE_NEON(prefix, call)
#endif
#define EDGELLM_SIMD_DISPATCH(path, prefix, call) \
  ::edgellm::require_simd_path(path);             \
  switch (path) {                                 \
    EDGELLM_SIMD_CASE_AVX2(prefix, call)          \
    EDGELLM_SIMD_CASE_NEON(prefix, call)          \
    default: return prefix scalar::call;          \
  }
