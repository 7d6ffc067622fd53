// KvCache and Arena (memory owners of the CPU decode path).
#include "arena.h"
#include "bindings/bindings.h"
#include "kv_cache.h"

namespace edgellm::bindings {

namespace {

// A numpy view of positions [0, n) of a layer's K or V: shape [n_kv_heads, n, head_dim], strides of the full
// [n_kv_heads, max_seq, head_dim] storage. `owner` (the Python KvCache object) is the view's base, so the
// memory outlives the view; later appends/reset change what it shows.
py::array kv_view(const KvCache& c, py::handle owner, std::size_t layer, std::size_t n, bool value) {
  if (n > c.length(layer)) {  // length() also checks the layer
    throw py::value_error("n: layer " + std::to_string(layer) + " holds " + std::to_string(c.length(layer)) +
                          " positions, asked for " + std::to_string(n));
  }
  const auto es = static_cast<py::ssize_t>(c.element_bytes());
  const auto hd = static_cast<py::ssize_t>(c.head_dim());
  const auto ms = static_cast<py::ssize_t>(c.max_seq());
  const py::dtype dt = c.dtype() == KvDType::F32 ? py::dtype("float32") : py::dtype("float16");
  const void* data = value ? c.values(layer) : c.keys(layer);
  py::array view(dt, {static_cast<py::ssize_t>(c.n_kv_heads()), static_cast<py::ssize_t>(n), hd},
                 {ms * hd * es, hd * es, es}, data, owner);
  // Read-only: writes must go through append (which converts and tracks length).
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

}  // namespace

void bind_kv_cache(py::module_& m) {
  py::register_exception<KvCacheFull>(m, "KvCacheFull", PyExc_IndexError);
  py::register_exception<ArenaExhausted>(m, "ArenaExhausted", PyExc_MemoryError);

  py::class_<KvCache>(m, "KvCache")
      .def(py::init([](std::size_t n_layers, std::size_t n_kv_heads, std::size_t max_seq, std::size_t head_dim,
                       const std::string& dtype, const std::string& simd) {
             KvDType dt;
             if (dtype == "float32") dt = KvDType::F32;
             else if (dtype == "float16") dt = KvDType::F16;
             else throw py::value_error("dtype: expected 'float32' or 'float16', got '" + dtype + "'");
             return new KvCache(n_layers, n_kv_heads, max_seq, head_dim, dt, parse_simd_path(simd));
           }),
           py::arg("n_layers"), py::arg("n_kv_heads"), py::arg("max_seq"), py::arg("head_dim"), py::arg("dtype"),
           py::arg("simd"))
      .def("append",
           [](KvCache& c, std::size_t layer, const F32Array& k, const F32Array& v) {
             require_ndim(k, "k", 2);
             require_ndim(v, "v", 2);
             const auto h = static_cast<py::ssize_t>(c.n_kv_heads()), d = static_cast<py::ssize_t>(c.head_dim());
             require_dim(k, "k", 0, h);
             require_dim(k, "k", 1, d);
             require_dim(v, "v", 0, h);
             require_dim(v, "v", 1, d);
             c.append(layer, k.data(), v.data());
           })
      .def("reset", &KvCache::reset)
      .def("length", &KvCache::length)
      .def("keys", [](py::object self, std::size_t layer, std::size_t n) {
        return kv_view(self.cast<const KvCache&>(), self, layer, n, false);
      })
      .def("values", [](py::object self, std::size_t layer, std::size_t n) {
        return kv_view(self.cast<const KvCache&>(), self, layer, n, true);
      })
      .def("read_keys_f32",
           [](const KvCache& c, std::size_t layer, std::size_t head, std::size_t n, F32Array& out) {
             require_ndim(out, "out", 2);
             require_dim(out, "out", 0, static_cast<py::ssize_t>(n));
             require_dim(out, "out", 1, static_cast<py::ssize_t>(c.head_dim()));
             c.read_keys_f32(layer, head, n, out.mutable_data());
           })
      .def("read_values_f32",
           [](const KvCache& c, std::size_t layer, std::size_t head, std::size_t n, F32Array& out) {
             require_ndim(out, "out", 2);
             require_dim(out, "out", 0, static_cast<py::ssize_t>(n));
             require_dim(out, "out", 1, static_cast<py::ssize_t>(c.head_dim()));
             c.read_values_f32(layer, head, n, out.mutable_data());
           })
      .def_property_readonly("n_layers", &KvCache::n_layers)
      .def_property_readonly("n_kv_heads", &KvCache::n_kv_heads)
      .def_property_readonly("max_seq", &KvCache::max_seq)
      .def_property_readonly("head_dim", &KvCache::head_dim)
      .def_property_readonly("total_bytes", &KvCache::total_bytes)
      .def_property_readonly("simd", [](const KvCache& c) { return simd_path_name(c.simd_path()); })
      .def_property_readonly("dtype",
                             [](const KvCache& c) { return c.dtype() == KvDType::F32 ? "float32" : "float16"; });

  py::class_<Arena>(m, "Arena")
      .def(py::init<std::size_t, std::size_t>(), py::arg("capacity_bytes"), py::arg("base_alignment"))
      .def("allocate",
           [](Arena& a, std::size_t bytes, std::size_t alignment) {
             return static_cast<std::size_t>(static_cast<std::byte*>(a.allocate(bytes, alignment)) - a.data());
           })
      // A numpy view of `count` float32 elements at a fresh allocation; its base is the arena object (the
      // memory lives as long as the view), but reset() lets later allocations reuse (overwrite) it.
      .def("allocate_f32",
           [](py::object self, std::size_t count, std::size_t alignment) {
             Arena& a = self.cast<Arena&>();
             if (count > SIZE_MAX / sizeof(float)) throw py::value_error("count: too large");
             auto* p = static_cast<float*>(a.allocate(count * sizeof(float), alignment));
             return py::array_t<float>({static_cast<py::ssize_t>(count)}, {static_cast<py::ssize_t>(sizeof(float))},
                                       p, self);
           })
      .def("address", [](const Arena& a) { return reinterpret_cast<std::uintptr_t>(a.data()); })
      .def("reset", &Arena::reset)
      .def_property_readonly("used_bytes", &Arena::used_bytes)
      .def_property_readonly("capacity_bytes", &Arena::capacity_bytes)
      .def_property_readonly("high_water_bytes", &Arena::high_water_bytes)
      .def_property_readonly("base_alignment", &Arena::base_alignment);
}

}  // namespace edgellm::bindings
