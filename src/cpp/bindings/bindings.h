// pybind11 glue for edgellm_ext._core: each kernel family registers its functions from its own file.
// Glue only: convert arrays, check that sizes agree (so that no call can read or write out of bounds, even
// when the private module is called directly), release the GIL, let C++ exceptions map to Python ones
// (std::invalid_argument -> ValueError, std::runtime_error -> RuntimeError). User-facing argument
// validation with full messages lives in the Python package (edgellm_ext/_checks.py).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#if defined(EDGELLM_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace edgellm::bindings {

namespace py = pybind11;

// A C-contiguous float32 numpy array; pybind11 rejects other dtypes instead of converting them.
using F32Array = py::array_t<float, py::array::c_style>;

#if defined(EDGELLM_WITH_CUDA)
// Python passes CUDA streams as integer handles (0: the legacy default stream).
inline cudaStream_t as_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }
#endif

// Throws ValueError unless `array` has `ndim` dimensions.
void require_ndim(const py::array& array, const char* name, py::ssize_t ndim);
// Throws ValueError unless dimension `axis` of `array` is `expected` long.
void require_dim(const py::array& array, const char* name, py::ssize_t axis, py::ssize_t expected);

// Without CUDA, every CUDA name still exists in the module (so the stub matches every build) and raises
// RuntimeError("edgellm_ext was built without CUDA") when called.
void bind_unavailable(py::module_& m, std::initializer_list<const char*> names);

void bind_build_info(py::module_& m);
void bind_cpu(py::module_& m);
void bind_cuda(py::module_& m);
void bind_attention(py::module_& m);
void bind_fused(py::module_& m);
void bind_tokenizer(py::module_& m);
void bind_activations(py::module_& m);
void bind_kv_cache(py::module_& m);
void bind_tmac(py::module_& m);
void bind_quant(py::module_& m);
void bind_ternary(py::module_& m);
void bind_quant(py::module_& m);
void bind_ternary(py::module_& m);
void bind_engine(py::module_& m);

}  // namespace edgellm::bindings
