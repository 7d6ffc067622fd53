// GEMV / fused RMSNorm + GEMV / RMSNorm prepared ops (src/cuda/fused_rmsnorm_gemv.h). Glue only: the ops
// validate shapes, dtypes and alignment themselves (std::invalid_argument -> ValueError); the Python wrappers
// in edgellm_ext/gemv.py validate the user's arrays with full messages first.
#include "bindings/bindings.h"

#if defined(EDGELLM_WITH_CUDA)
#include "fused_rmsnorm_gemv.h"
#include "launchable.h"
#endif

namespace edgellm::bindings {

void bind_fused(py::module_& m) {
#if defined(EDGELLM_WITH_CUDA)
  using namespace edgellm::cuda;
  // `owners` (any Python object, e.g. a tuple of the arrays) is kept alive as long as the op: the op holds
  // raw device addresses into memory those objects own.
  py::class_<GemvOp, Launchable>(m, "GemvOp")
      .def(py::init([](std::uintptr_t w, const std::string& w_dtype, std::uintptr_t x, const std::string& x_dtype,
                       std::uintptr_t g, std::uintptr_t y, std::int64_t m_rows, std::int64_t k, int batch, bool norm,
                       float eps, const std::string& variant, const py::object&) {
             return new GemvOp(w, parse_dtype(w_dtype), x, parse_dtype(x_dtype), g, y, m_rows, k, batch, norm, eps,
                               parse_gemv_variant(variant));
           }),
           py::arg("w"), py::arg("w_dtype"), py::arg("x"), py::arg("x_dtype"), py::arg("g"), py::arg("y"),
           py::arg("m"), py::arg("k"), py::arg("batch"), py::arg("norm"), py::arg("eps"), py::arg("variant"),
           py::arg("owners"), py::keep_alive<1, 14>())
      .def_property_readonly("variant", [](const GemvOp& op) { return std::string(gemv_variant_name(op.variant())); })
      .def_property_readonly("bytes_moved", &GemvOp::bytes_moved)
      .def_property_readonly("activation_reads_bytes", &GemvOp::activation_reads_bytes)
      .def_property_readonly("grid_blocks", &GemvOp::grid_blocks)
      .def_property_readonly("block_threads", &GemvOp::block_threads);

  py::class_<RmsnormOp, Launchable>(m, "RmsnormOp")
      .def(py::init([](std::uintptr_t x, const std::string& dtype, std::uintptr_t g, std::uintptr_t out, std::int64_t k,
                       int batch, float eps, const py::object&) {
             return new RmsnormOp(x, parse_dtype(dtype), g, out, k, batch, eps);
           }),
           py::arg("x"), py::arg("dtype"), py::arg("g"), py::arg("out"), py::arg("k"), py::arg("batch"), py::arg("eps"),
           py::arg("owners"), py::keep_alive<1, 9>())
      .def_property_readonly("bytes_moved", &RmsnormOp::bytes_moved)
      .def_property_readonly("block_threads", &RmsnormOp::block_threads);

  py::class_<RmsnormThenGemvOp, Launchable>(m, "RmsnormThenGemvOp")
      .def(py::init([](std::uintptr_t w, const std::string& w_dtype, std::uintptr_t x, const std::string& x_dtype,
                       std::uintptr_t g, std::uintptr_t y, std::int64_t m_rows, std::int64_t k, int batch, float eps,
                       const std::string& variant, const py::object&) {
             return new RmsnormThenGemvOp(w, parse_dtype(w_dtype), x, parse_dtype(x_dtype), g, y, m_rows, k, batch, eps,
                                          parse_gemv_variant(variant));
           }),
           py::arg("w"), py::arg("w_dtype"), py::arg("x"), py::arg("x_dtype"), py::arg("g"), py::arg("y"),
           py::arg("m"), py::arg("k"), py::arg("batch"), py::arg("eps"), py::arg("variant"), py::arg("owners"),
           py::keep_alive<1, 13>())
      .def_property_readonly("variant",
                             [](const RmsnormThenGemvOp& op) { return std::string(gemv_variant_name(op.variant())); })
      .def_property_readonly("bytes_moved", &RmsnormThenGemvOp::bytes_moved);

  m.def(
      "gemv_choose_variant",
      [](std::int64_t m_rows, std::int64_t k, int batch, int sm_count) {
        return std::string(gemv_variant_name(choose_gemv_variant(m_rows, k, batch, sm_count)));
      },
      py::arg("m"), py::arg("k"), py::arg("batch"), py::arg("sm_count"));
  m.def("gemv_shared_max_k", [] { return kGemvSharedMaxK; });
#else
  bind_unavailable(m, {"GemvOp", "RmsnormOp", "RmsnormThenGemvOp", "gemv_choose_variant", "gemv_shared_max_k"});
#endif
}

}  // namespace edgellm::bindings
