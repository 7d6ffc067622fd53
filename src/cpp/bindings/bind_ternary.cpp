// pybind11 glue for ternary.h. Sizes are checked here (memory safety); user-facing checks, including the
// invalid-code check, are in edgellm_ext/ternary.py.
#include <string>

#include "bindings/bindings.h"
#include "ternary.h"

namespace edgellm::bindings {

void bind_ternary(py::module_& m) {
  m.def("ternary_padded_k", [](std::size_t k) { return cpu::ternary_padded_k(k); });

  // packed: [m, kp/4] u8; scale: [m] f32; x: [k] f32; y: [m] f32.
  m.def("ternary_matvec",
        [](const py::array_t<std::uint8_t, py::array::c_style>& packed, const F32Array& scale, const F32Array& x,
           F32Array& y, const std::string& method, const std::string& simd, int n_threads) {
          require_ndim(packed, "packed", 2);
          require_ndim(scale, "scale", 1);
          require_ndim(x, "x", 1);
          require_ndim(y, "out", 1);
          const std::size_t k = static_cast<std::size_t>(x.shape(0));
          const py::ssize_t rows = packed.shape(0);
          require_dim(packed, "packed", 1, static_cast<py::ssize_t>(cpu::ternary_padded_k(k) / 4));
          require_dim(scale, "scale", 0, rows);
          require_dim(y, "out", 0, rows);
          const cpu::TernaryMethod meth = cpu::parse_ternary_method(method.c_str());
          const SimdPath path = parse_simd_path(simd);
          float* y_data = y.mutable_data();
          py::gil_scoped_release release;
          cpu::ternary_matvec(packed.data(), scale.data(), x.data(), y_data, static_cast<std::size_t>(rows), k, meth,
                              path, n_threads);
        });
}

}  // namespace edgellm::bindings
