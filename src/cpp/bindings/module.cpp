#include "bindings/bindings.h"

namespace edgellm::bindings {

void require_ndim(const py::array& array, const char* name, py::ssize_t ndim) {
  if (array.ndim() != ndim) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) + " dimensions, got " +
                          std::to_string(array.ndim()));
  }
}

void require_dim(const py::array& array, const char* name, py::ssize_t axis, py::ssize_t expected) {
  if (array.shape(axis) != expected) {
    throw py::value_error(std::string(name) + ": dimension " + std::to_string(axis) + " must be " +
                          std::to_string(expected) + ", got " + std::to_string(array.shape(axis)));
  }
}

void bind_unavailable(py::module_& m, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    m.def(name, [](const py::args&, const py::kwargs&) {
      throw std::runtime_error("edgellm_ext was built without CUDA (build_info()['cuda_compiled'] is False)");
    });
  }
}

}  // namespace edgellm::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgellm_ext's compiled core (private: use the edgellm_ext package)";
  edgellm::bindings::bind_build_info(m);
  edgellm::bindings::bind_cpu(m);
  edgellm::bindings::bind_cuda(m);
  edgellm::bindings::bind_attention(m);
  edgellm::bindings::bind_fused(m);
  edgellm::bindings::bind_tokenizer(m);
  edgellm::bindings::bind_activations(m);
  edgellm::bindings::bind_kv_cache(m);
  edgellm::bindings::bind_tmac(m);
  edgellm::bindings::bind_quant(m);
  edgellm::bindings::bind_ternary(m);
  edgellm::bindings::bind_quant(m);
  edgellm::bindings::bind_ternary(m);
  edgellm::bindings::bind_engine(m);
}
