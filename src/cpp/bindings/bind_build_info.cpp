#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "simd/simd.h"

namespace edgellm::bindings {

void bind_build_info(py::module_& m) {
  m.def(
      "build_info",
      []() {
        py::dict info;
        info["version"] = EDGELLM_VERSION;
        info["compiler"] = EDGELLM_CXX_COMPILER;
        info["build_type"] = EDGELLM_BUILD_TYPE;
        info["cxx_flags"] = EDGELLM_CXX_FLAGS;
        info["target_arch"] = EDGELLM_TARGET_ARCH;
        py::list compiled;
        for (SimdPath p : compiled_simd_paths()) compiled.append(simd_path_name(p));
        info["simd_compiled"] = compiled;
        info["simd"] = simd_path_name(best_simd_path());
#if defined(EDGELLM_WITH_CUDA)
        info["cuda_compiled"] = true;
        info["cuda_compiler_version"] = EDGELLM_CUDA_COMPILER_VERSION;
        info["cuda_architectures"] = EDGELLM_CUDA_ARCHITECTURES;
#else
        info["cuda_compiled"] = false;
        info["cuda_compiler_version"] = py::none();
        info["cuda_architectures"] = py::none();
#endif
        info["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                                   std::to_string(PYBIND11_VERSION_MINOR) + "." +
                                   std::to_string(PYBIND11_VERSION_PATCH);
        return info;
      },
      "Facts fixed when the module was compiled, plus the SIMD path the running CPU selects.");
}

}  // namespace edgellm::bindings
