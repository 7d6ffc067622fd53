// Ternary GEMV on the GPU (src/cuda/tmac_gemv.h): device-resident TernaryWeights and the prepared op.
// User-facing validation with full messages is in edgellm_ext/tmac.py; the C++ constructors validate again
// (std::invalid_argument -> ValueError) so that no direct call into _core can read out of bounds.
#include "bindings/bindings.h"

#if defined(EDGELLM_WITH_CUDA)
#include <memory>

#include "tmac_gemv.h"
#endif

namespace edgellm::bindings {

void bind_tmac(py::module_& m) {
#if defined(EDGELLM_WITH_CUDA)
  using namespace edgellm::cuda;
  using U8Array = py::array_t<std::uint8_t, py::array::c_style>;

  m.def("tmac_mma_supported", []() { return tmac_mma_supported(); });
  m.def("tmac_stream_fits", [](std::int64_t k, int batch) { return tmac_stream_fits(k, batch); }, py::arg("k"),
        py::arg("batch"));

  py::class_<TernaryWeights, std::shared_ptr<TernaryWeights>>(m, "TernaryWeights")
      .def(py::init([](const U8Array& packed, const F32Array& scale, std::int64_t k, std::uintptr_t stream) {
             require_ndim(packed, "packed", 2);
             require_ndim(scale, "scale", 1);
             const std::int64_t rows = packed.shape(0);
             py::gil_scoped_release release;
             return std::make_shared<TernaryWeights>(packed.data(), static_cast<std::size_t>(packed.size()),
                                                     scale.data(), static_cast<std::size_t>(scale.size()), rows, k,
                                                     as_stream(stream));
           }),
           py::arg("packed"), py::arg("scale"), py::arg("k"), py::arg("stream"))
      .def_property_readonly("m", &TernaryWeights::m)
      .def_property_readonly("k", &TernaryWeights::k)
      .def_property_readonly("kp", &TernaryWeights::kp)
      .def_property_readonly("packed_bytes", &TernaryWeights::packed_bytes)
      .def_property_readonly("scale_bytes", &TernaryWeights::scale_bytes)
      .def_property_readonly("packed_address",
                             [](const TernaryWeights& w) { return reinterpret_cast<std::uintptr_t>(w.packed()); })
      .def_property_readonly("scale_address",
                             [](const TernaryWeights& w) { return reinterpret_cast<std::uintptr_t>(w.scale()); });

  // py::dynamic_attr: the Python wrapper attaches the x/out arrays to the op to keep them alive with it.
  py::class_<TmacGemvOp, Launchable>(m, "TmacGemvOp", py::dynamic_attr())
      .def(py::init([](std::shared_ptr<TernaryWeights> weights, std::uintptr_t x, std::uintptr_t out, int batch,
                       const std::string& x_dtype, const std::string& out_dtype, const std::string& variant,
                       int max_k_slices) {
             return std::make_unique<TmacGemvOp>(std::move(weights), x, out, batch, parse_tmac_dtype(x_dtype),
                                                 parse_tmac_dtype(out_dtype), parse_tmac_variant(variant),
                                                 max_k_slices);
           }),
           py::arg("weights"), py::arg("x"), py::arg("out"), py::arg("batch"), py::arg("x_dtype"),
           py::arg("out_dtype"), py::arg("variant"), py::arg("max_k_slices") = 0)
      .def_property_readonly("variant", [](const TmacGemvOp& op) { return std::string(tmac_variant_name(op.variant())); })
      .def_property_readonly("bytes_per_launch", &TmacGemvOp::bytes_per_launch)
      .def_property_readonly("launch_shape", [](const TmacGemvOp& op) {
        const TmacLaunchShape& s = op.launch_shape();
        py::dict d;
        d["blocks"] = s.blocks;
        d["threads"] = s.threads;
        d["k_slices"] = s.k_slices;
        d["tiles_per_warp"] = s.tiles_per_warp;
        d["rows_per_block"] = s.rows_per_block;
        d["items_per_tile"] = s.items_per_tile;
        d["codes"] = s.codes;
        d["smem_bytes"] = s.smem_bytes;
        return d;
      });
#else
  bind_unavailable(m, {"TernaryWeights", "TmacGemvOp", "tmac_mma_supported", "tmac_stream_fits"});
#endif
}

}  // namespace edgellm::bindings
