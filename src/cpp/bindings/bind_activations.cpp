#include "activations.h"
#include "bindings/bindings.h"

namespace edgellm::bindings {

void bind_activations(py::module_& m) {
  // x, out: [rows, n]; the Python wrapper reshapes 1-D inputs.
  m.def("layernorm_f32", [](const F32Array& x, const F32Array& weight, const F32Array& bias, F32Array& y, float eps,
                            const std::string& simd) {
    require_ndim(x, "x", 2);
    require_ndim(weight, "weight", 1);
    require_ndim(bias, "bias", 1);
    require_ndim(y, "out", 2);
    require_dim(weight, "weight", 0, x.shape(1));
    require_dim(bias, "bias", 0, x.shape(1));
    require_dim(y, "out", 0, x.shape(0));
    require_dim(y, "out", 1, x.shape(1));
    const SimdPath path = parse_simd_path(simd);
    float* y_data = y.mutable_data();
    py::gil_scoped_release release;
    cpu::layernorm_f32(x.data(), weight.data(), bias.data(), y_data, static_cast<std::size_t>(x.shape(0)),
                       static_cast<std::size_t>(x.shape(1)), eps, path);
  });

  m.def("silu_f32", [](const F32Array& x, F32Array& y, const std::string& simd) {
    require_ndim(x, "x", 1);
    require_ndim(y, "out", 1);
    require_dim(y, "out", 0, x.shape(0));
    const SimdPath path = parse_simd_path(simd);
    float* y_data = y.mutable_data();
    py::gil_scoped_release release;
    cpu::silu_f32(x.data(), y_data, static_cast<std::size_t>(x.shape(0)), path);
  });

  m.def("swiglu_f32", [](const F32Array& gate, const F32Array& up, F32Array& y, const std::string& simd) {
    require_ndim(gate, "gate", 1);
    require_ndim(up, "up", 1);
    require_ndim(y, "out", 1);
    require_dim(up, "up", 0, gate.shape(0));
    require_dim(y, "out", 0, gate.shape(0));
    const SimdPath path = parse_simd_path(simd);
    float* y_data = y.mutable_data();
    py::gil_scoped_release release;
    cpu::swiglu_f32(gate.data(), up.data(), y_data, static_cast<std::size_t>(gate.shape(0)), path);
  });

  // In place on x: [n_heads, head_dim]. mode: "normal" or "neox".
  m.def("rope_f32", [](F32Array& x, std::size_t pos, double theta, const std::string& mode, const std::string& simd) {
    require_ndim(x, "x", 2);
    cpu::RopeMode rope_mode;
    if (mode == "normal") rope_mode = cpu::RopeMode::Normal;
    else if (mode == "neox") rope_mode = cpu::RopeMode::Neox;
    else throw py::value_error("mode: expected 'normal' or 'neox', got '" + mode + "'");
    const SimdPath path = parse_simd_path(simd);
    float* data = x.mutable_data();
    py::gil_scoped_release release;
    cpu::rope_f32(data, static_cast<std::size_t>(x.shape(0)), static_cast<std::size_t>(x.shape(1)), pos, theta,
                  rope_mode, path);
  });

  m.def("argmax_f32", [](const F32Array& x, const std::string& simd) {
    require_ndim(x, "x", 1);
    const SimdPath path = parse_simd_path(simd);
    py::gil_scoped_release release;
    return cpu::argmax_f32(x.data(), static_cast<std::size_t>(x.shape(0)), path);
  });
}

}  // namespace edgellm::bindings
