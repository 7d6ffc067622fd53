#include <pybind11/stl.h>

#include "basic_kernels.h"
#include "bindings/bindings.h"

namespace edgellm::bindings {

void bind_cpu(py::module_& m) {
  m.def("simd_paths", []() {
    std::vector<std::string> names;
    for (SimdPath p : compiled_simd_paths()) {
      if (simd_path_supported(p)) names.push_back(simd_path_name(p));
    }
    return names;
  });

  m.def("dot_f32", [](const F32Array& a, const F32Array& b, const std::string& simd) {
    require_ndim(a, "a", 1);
    require_ndim(b, "b", 1);
    require_dim(b, "b", 0, a.shape(0));
    const SimdPath path = parse_simd_path(simd);
    py::gil_scoped_release release;
    return cpu::dot_f32(a.data(), b.data(), static_cast<std::size_t>(a.shape(0)), path);
  });

  m.def("matvec_f32", [](const F32Array& w, const F32Array& x, F32Array& y, const std::string& simd) {
    require_ndim(w, "w", 2);
    require_ndim(x, "x", 1);
    require_ndim(y, "out", 1);
    require_dim(x, "x", 0, w.shape(1));
    require_dim(y, "out", 0, w.shape(0));
    const SimdPath path = parse_simd_path(simd);
    float* y_data = y.mutable_data();
    py::gil_scoped_release release;
    cpu::matvec_f32(w.data(), x.data(), y_data, static_cast<std::size_t>(w.shape(0)),
                    static_cast<std::size_t>(w.shape(1)), path);
  });

  // x and out are [rows, n]; the Python wrapper reshapes 1-D inputs.
  m.def("rmsnorm_f32",
        [](const F32Array& x, const F32Array& weight, F32Array& y, float eps, const std::string& simd) {
          require_ndim(x, "x", 2);
          require_ndim(weight, "weight", 1);
          require_ndim(y, "out", 2);
          require_dim(weight, "weight", 0, x.shape(1));
          require_dim(y, "out", 0, x.shape(0));
          require_dim(y, "out", 1, x.shape(1));
          const SimdPath path = parse_simd_path(simd);
          float* y_data = y.mutable_data();
          py::gil_scoped_release release;
          cpu::rmsnorm_f32(x.data(), weight.data(), y_data, static_cast<std::size_t>(x.shape(0)),
                           static_cast<std::size_t>(x.shape(1)), eps, path);
        });

  m.def("softmax_f32", [](const F32Array& x, F32Array& y, const std::string& simd) {
    require_ndim(x, "x", 2);
    require_ndim(y, "out", 2);
    require_dim(y, "out", 0, x.shape(0));
    require_dim(y, "out", 1, x.shape(1));
    const SimdPath path = parse_simd_path(simd);
    float* y_data = y.mutable_data();
    py::gil_scoped_release release;
    cpu::softmax_f32(x.data(), y_data, static_cast<std::size_t>(x.shape(0)), static_cast<std::size_t>(x.shape(1)),
                     path);
  });
}

}  // namespace edgellm::bindings
