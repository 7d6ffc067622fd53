#include "simd/simd.h"

#include "simd/dispatch.h"

#include <stdexcept>

namespace edgellm {

const char* simd_path_name(SimdPath path) {
  switch (path) {
    case SimdPath::Scalar: return "scalar";
    case SimdPath::Avx2: return "avx2";
    case SimdPath::Neon: return "neon";
  }
  return "unknown";
}

std::vector<SimdPath> compiled_simd_paths() {
  std::vector<SimdPath> paths{SimdPath::Scalar};
#if defined(EDGELLM_HAVE_AVX2)
  paths.push_back(SimdPath::Avx2);
#endif
#if defined(EDGELLM_HAVE_NEON)
  paths.push_back(SimdPath::Neon);
#endif
  return paths;
}

bool simd_path_supported(SimdPath path) {
  switch (path) {
    case SimdPath::Scalar: return true;
    case SimdPath::Avx2:
#if defined(EDGELLM_HAVE_AVX2)
      // The AVX2 translation units also use FMA and F16C instructions: all three must be present.
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
      return false;
#endif
    case SimdPath::Neon:
#if defined(EDGELLM_HAVE_NEON)
      return true;
#else
      return false;
#endif
  }
  return false;
}

SimdPath best_simd_path() {
  if (simd_path_supported(SimdPath::Avx2)) return SimdPath::Avx2;
  if (simd_path_supported(SimdPath::Neon)) return SimdPath::Neon;
  return SimdPath::Scalar;
}

void require_simd_path(SimdPath path) {
  if (!simd_path_supported(path)) {
    throw std::invalid_argument(std::string("simd path '") + simd_path_name(path) +
                                "' is not supported on this build and CPU");
  }
}

SimdPath parse_simd_path(const std::string& name) {
  if (name == "auto") return best_simd_path();
  std::string supported;
  for (SimdPath p : compiled_simd_paths()) {
    if (!simd_path_supported(p)) continue;
    if (name == simd_path_name(p)) return p;
    supported += supported.empty() ? "" : ", ";
    supported += std::string("'") + simd_path_name(p) + "'";
  }
  throw std::invalid_argument("simd: '" + name + "' is not available on this build and CPU; choose 'auto' or one of " +
                              supported);
}

}  // namespace edgellm
