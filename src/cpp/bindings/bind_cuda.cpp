#include "bindings/bindings.h"

#if defined(EDGELLM_WITH_CUDA)
#include "device.h"
#endif

namespace edgellm::bindings {

void bind_cuda(py::module_& m) {
#if defined(EDGELLM_WITH_CUDA)
  m.def("cuda_compiled", []() { return true; });
  m.def("cuda_device_count", []() { return cuda::device_count(); });
  m.def("cuda_device_info", [](int ordinal) {
    const cuda::DeviceInfo d = cuda::device_info(ordinal);
    py::dict info;
    info["name"] = d.name;
    info["ordinal"] = d.ordinal;
    info["compute_capability"] = py::make_tuple(d.compute_capability_major, d.compute_capability_minor);
    info["multiprocessor_count"] = d.multiprocessor_count;
    info["l2_cache_bytes"] = d.l2_cache_bytes;
    info["global_memory_bytes"] = d.global_memory_bytes;
    info["shared_memory_per_block_optin_bytes"] = d.shared_memory_per_block_optin_bytes;
    info["runtime_version"] = d.runtime_version;
    info["driver_version"] = d.driver_version;
    return info;
  });
#else
  m.def("cuda_compiled", []() { return false; });
  m.def("cuda_device_count", []() { return 0; });
  m.def("cuda_device_info", [](int) -> py::dict {
    throw std::runtime_error("edgellm_ext was built without CUDA (build_info()['cuda_compiled'] is False)");
  });
#endif
}

}  // namespace edgellm::bindings
