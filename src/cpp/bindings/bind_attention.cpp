// fa2_decode and kv_append prepared ops (src/cuda/fa2_decode.h).
#include "bindings/bindings.h"

#if defined(EDGELLM_WITH_CUDA)
#include "fa2_decode.h"
#endif

namespace edgellm::bindings {

#if defined(EDGELLM_WITH_CUDA)
namespace {
cuda::Fa2DecodeShape make_shape(int batch, int q_heads, int kv_heads, int head_dim, int max_seq, int dtype) {
  if (dtype < 0 || dtype > 2) throw py::value_error("dtype: expected 0 (fp16), 1 (bf16) or 2 (fp32)");
  cuda::Fa2DecodeShape s;
  s.batch = batch;
  s.q_heads = q_heads;
  s.kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.max_seq = max_seq;
  s.dtype = static_cast<cuda::DType>(dtype);
  return s;
}
}  // namespace
#endif

void bind_attention(py::module_& m) {
#if defined(EDGELLM_WITH_CUDA)
  m.def(
      "fa2_default_num_splits",
      [](int batch, int q_heads, int kv_heads, int head_dim, int max_seq, int dtype, int max_len, int multiprocessors,
         int heads_per_block) {
        return cuda::fa2_default_num_splits(make_shape(batch, q_heads, kv_heads, head_dim, max_seq, dtype), max_len,
                                            multiprocessors, heads_per_block);
      },
      py::arg("batch"), py::arg("q_heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("max_seq"),
      py::arg("dtype"), py::arg("max_len"), py::arg("multiprocessors"), py::arg("heads_per_block"));

  py::class_<cuda::Fa2DecodeOp, cuda::Launchable>(m, "Fa2DecodeOp")
      .def(py::init([](int batch, int q_heads, int kv_heads, int head_dim, int max_seq, int dtype, std::uintptr_t q,
                       std::uintptr_t k_cache, std::uintptr_t v_cache, std::uintptr_t seq_lens, std::uintptr_t out,
                       float scale, int max_len_hint, int num_splits, int heads_per_block, int variant,
                       bool kv_shared, int merge) {
             cuda::Fa2DecodeShape shape = make_shape(batch, q_heads, kv_heads, head_dim, max_seq, dtype);
             shape.kv_shared = kv_shared;
             return new cuda::Fa2DecodeOp(shape, q, k_cache, v_cache, seq_lens, out, scale, max_len_hint, num_splits,
                                          heads_per_block, static_cast<cuda::Fa2Variant>(variant),
                                          static_cast<cuda::Fa2Merge>(merge));
           }),
           py::arg("batch"), py::arg("q_heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("max_seq"),
           py::arg("dtype"), py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("seq_lens"),
           py::arg("out"), py::arg("scale"), py::arg("max_len_hint"), py::arg("num_splits"), py::arg("heads_per_block"),
           py::arg("variant") = -1, py::arg("kv_shared") = false, py::arg("merge") = -1)
      .def_property_readonly("num_splits", &cuda::Fa2DecodeOp::num_splits)
      .def_property_readonly("heads_per_block", &cuda::Fa2DecodeOp::heads_per_block)
      .def_property_readonly("variant", [](const cuda::Fa2DecodeOp& op) { return static_cast<int>(op.variant()); })
      .def_property_readonly("merge", [](const cuda::Fa2DecodeOp& op) { return static_cast<int>(op.merge()); });

  py::class_<cuda::KvAppendOp, cuda::Launchable>(m, "KvAppendOp")
      .def(py::init([](int batch, int kv_heads, int head_dim, int max_seq, int dtype, std::uintptr_t k_cache,
                       std::uintptr_t v_cache, std::uintptr_t k_new, std::uintptr_t v_new, std::uintptr_t positions) {
             return new cuda::KvAppendOp(make_shape(batch, kv_heads, kv_heads, head_dim, max_seq, dtype), k_cache,
                                         v_cache, k_new, v_new, positions);
           }),
           py::arg("batch"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("max_seq"), py::arg("dtype"),
           py::arg("k_cache"), py::arg("v_cache"), py::arg("k_new"), py::arg("v_new"), py::arg("positions"));
#else
  bind_unavailable(m, {"fa2_default_num_splits", "Fa2DecodeOp", "KvAppendOp"});
#endif
}

}  // namespace edgellm::bindings
