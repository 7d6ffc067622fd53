// pybind11 glue for quant.h. Sizes are checked here so that no call can read or write out of bounds; the
// user-facing checks with full messages are in edgellm_ext/quant.py.
#include <string>

#include "bindings/bindings.h"
#include "quant.h"

namespace edgellm::bindings {
namespace {

using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

std::size_t require_bytes(const U8Array& a, const char* name, std::size_t expected) {
  if (static_cast<std::size_t>(a.size()) != expected) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected) + " bytes, got " +
                          std::to_string(a.size()));
  }
  return expected;
}

std::size_t blocks_of(std::size_t n_elems, const char* name) {
  if (n_elems % cpu::kQuantBlockElems != 0) {
    throw py::value_error(std::string(name) + ": " + std::to_string(n_elems) +
                          " elements is not a multiple of the block size 32");
  }
  return n_elems / cpu::kQuantBlockElems;
}

}  // namespace

void bind_quant(py::module_& m) {
  m.def("quant_block_bytes", [](int qtype) { return cpu::quant_block_bytes(cpu::quant_type_from_id(qtype)); });

  // x: [n_rows, cols] f32 -> out: n_rows * cols/32 blocks.
  m.def("quant_quantize", [](int qtype, const F32Array& x, U8Array& out) {
    require_ndim(x, "x", 2);
    const cpu::QuantType t = cpu::quant_type_from_id(qtype);
    const std::size_t rows = static_cast<std::size_t>(x.shape(0));
    const std::size_t bpr = blocks_of(static_cast<std::size_t>(x.shape(1)), "x");
    require_bytes(out, "out", rows * bpr * cpu::quant_block_bytes(t));
    std::uint8_t* o = out.mutable_data();
    py::gil_scoped_release release;
    cpu::quantize(t, x.data(), o, rows, bpr);
  });

  m.def("quant_dequantize", [](int qtype, const U8Array& blocks, F32Array& out, const std::string& simd) {
    const cpu::QuantType t = cpu::quant_type_from_id(qtype);
    const std::size_t nb = blocks_of(static_cast<std::size_t>(out.size()), "out");
    require_bytes(blocks, "blocks", nb * cpu::quant_block_bytes(t));
    const SimdPath path = parse_simd_path(simd);
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    cpu::dequantize(t, blocks.data(), o, nb, path);
  });

  m.def("quant_check_scales", [](int qtype, const U8Array& blocks, std::size_t rows, std::size_t blocks_per_row) {
    const cpu::QuantType t = cpu::quant_type_from_id(qtype);
    require_bytes(blocks, "blocks", rows * blocks_per_row * cpu::quant_block_bytes(t));
    py::gil_scoped_release release;
    cpu::check_quant_scales(t, blocks.data(), rows, blocks_per_row);
  });

  // w: [rows, cols/32 * block_bytes]; x: [cols]; y: [rows]. activations: "f32" or "q8_0".
  m.def("quant_matvec",
        [](int qtype, const U8Array& w, const F32Array& x, F32Array& y, const std::string& activations,
           const std::string& simd, int n_threads) {
          const cpu::QuantType t = cpu::quant_type_from_id(qtype);
          require_ndim(w, "w", 2);
          require_ndim(x, "x", 1);
          require_ndim(y, "out", 1);
          const std::size_t rows = static_cast<std::size_t>(w.shape(0));
          const std::size_t cols = static_cast<std::size_t>(x.shape(0));
          const std::size_t bpr = blocks_of(cols, "x");
          require_dim(w, "w", 1, static_cast<py::ssize_t>(bpr * cpu::quant_block_bytes(t)));
          require_dim(y, "out", 0, static_cast<py::ssize_t>(rows));
          if (activations != "f32" && activations != "q8_0") {
            throw py::value_error("activations: expected 'f32' or 'q8_0', got '" + activations + "'");
          }
          const SimdPath path = parse_simd_path(simd);
          float* y_data = y.mutable_data();
          py::gil_scoped_release release;
          if (activations == "f32") {
            cpu::quant_matvec_f32(t, w.data(), x.data(), y_data, rows, cols, path, n_threads);
          } else {
            cpu::quant_matvec_q8_0(t, w.data(), x.data(), y_data, rows, cols, path, n_threads);
          }
        });
}

}  // namespace edgellm::bindings
