// pybind11 glue for engine.h: builds a CpuEngine from a config dict and a dict of weight arrays (GGUF tensor names
// without ".weight"), checking every array's dtype and byte size against the config so that no step can read out
// of bounds. The arrays (often views of a GGUF memmap) are kept alive by the engine object.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "engine.h"
#include "quant.h"

#if defined(EDGELLM_WITH_CUDA)
#include "gpu_engine.h"
#endif

namespace edgellm::bindings {
namespace {

// The arrays a ModelView points into (kept alive as long as the CPU engine; the GPU engine copies them).
using Owners = std::vector<py::object>;

struct PyEngine {
  Owners owners;  // arrays whose memory the engine points into
  std::unique_ptr<cpu::CpuEngine> engine;
  std::mutex busy;                 // one step at a time (the GIL is released inside)
};

std::size_t cfg_size(const py::dict& c, const char* key) {
  if (!c.contains(key)) throw py::value_error(std::string("config: missing '") + key + "'");
  const long long v = c[key].cast<long long>();
  if (v < 0) throw py::value_error(std::string("config: '") + key + "' is negative");
  return static_cast<std::size_t>(v);
}

const void* take(Owners& owners, const py::dict& weights, const std::string& name, bool optional, int* type_out,
                 std::size_t rows, std::size_t cols) {
  if (!weights.contains(name)) {
    if (optional) return nullptr;
    throw py::value_error("weights: missing tensor '" + name + "'");
  }
  const py::tuple entry = weights[py::str(name)].cast<py::tuple>();
  if (entry.size() != 2) throw py::value_error("weights['" + name + "']: expected (type_id, array)");
  const int type = entry[0].cast<int>();
  std::size_t expected_bytes;
  py::array arr;
  if (type == 0) {
    auto a = py::array_t<float, py::array::c_style>::ensure(entry[1]);
    if (!a || !py::isinstance<py::array_t<float>>(entry[1])) {
      throw py::value_error("weights['" + name + "']: type F32 needs a float32 array");
    }
    arr = a;
    expected_bytes = rows * cols * sizeof(float);
  } else if (type == 2 || type == 3 || type == 8) {
    if (type_out == nullptr) throw py::value_error("weights['" + name + "']: must be F32 (type 0)");
    auto a = py::array_t<std::uint8_t, py::array::c_style>::ensure(entry[1]);
    if (!a || !py::isinstance<py::array_t<std::uint8_t>>(entry[1])) {
      throw py::value_error("weights['" + name + "']: a quantized tensor needs a uint8 array of blocks");
    }
    arr = a;
    if (cols % cpu::kQuantBlockElems != 0) {
      throw py::value_error("weights['" + name + "']: cols = " + std::to_string(cols) + " is not a multiple of 32");
    }
    expected_bytes = rows * (cols / cpu::kQuantBlockElems) *
                     cpu::quant_block_bytes(cpu::quant_type_from_id(type));
  } else {
    throw py::value_error("weights['" + name + "']: type id " + std::to_string(type) +
                          " is not supported by the engine (F32 0, Q4_0 2, Q4_1 3, Q8_0 8)");
  }
  if (static_cast<std::size_t>(arr.nbytes()) != expected_bytes) {
    throw py::value_error("weights['" + name + "']: expected " + std::to_string(expected_bytes) + " bytes for [" +
                          std::to_string(rows) + ", " + std::to_string(cols) + "], got " +
                          std::to_string(arr.nbytes()) + " (truncated or wrong shape?)");
  }
  if (type_out) *type_out = type;
  owners.push_back(arr);
  return arr.data();
}

cpu::WeightView matrix(Owners& e, const py::dict& w, const std::string& name, std::size_t rows, std::size_t cols) {
  int type = 0;
  const void* data = take(e, w, name, false, &type, rows, cols);
  return cpu::WeightView{static_cast<cpu::WeightType>(type), data, rows, cols};
}

const float* vec(Owners& e, const py::dict& w, const std::string& name, std::size_t n, bool optional = false) {
  return static_cast<const float*>(take(e, w, name, optional, nullptr, 1, n));
}

// The model description both engines take, from the config dict and the weight arrays (checked: dtype, bytes).
cpu::ModelView model_view(Owners& owners, const py::dict& config, const py::dict& weights) {
  Owners* e = &owners;
  cpu::ModelView m;
  cpu::EngineConfig& c = m.config;
  c.n_layer = cfg_size(config, "n_layer");
  c.n_embd = cfg_size(config, "n_embd");
  c.n_head = cfg_size(config, "n_head");
  c.n_head_kv = cfg_size(config, "n_head_kv");
  c.head_dim = cfg_size(config, "head_dim");
  c.n_ff = cfg_size(config, "n_ff");
  c.n_vocab = cfg_size(config, "n_vocab");
  c.n_rot = cfg_size(config, "n_rot");
  c.max_seq = cfg_size(config, "max_seq");
  c.rope_base = config["rope_base"].cast<float>();
  c.rope_neox = config["rope_neox"].cast<bool>();
  c.rms_eps = config["rms_eps"].cast<float>();
  const std::size_t qd = c.n_head * c.head_dim, kvd = c.n_head_kv * c.head_dim;
  m.tok_embd = matrix(*e, weights, "token_embd", c.n_vocab, c.n_embd);
  m.output = weights.contains("output") ? matrix(*e, weights, "output", c.n_vocab, c.n_embd) : m.tok_embd;
  m.output_norm = vec(*e, weights, "output_norm", c.n_embd);
  if (c.n_rot % 2 != 0) throw py::value_error("config: n_rot must be even");
  m.rope_freqs = vec(*e, weights, "rope_freqs", c.n_rot / 2, true);
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    cpu::LayerView L;
    L.attn_norm = vec(*e, weights, p + "attn_norm", c.n_embd);
    L.wq = matrix(*e, weights, p + "attn_q", qd, c.n_embd);
    L.wk = matrix(*e, weights, p + "attn_k", kvd, c.n_embd);
    L.wv = matrix(*e, weights, p + "attn_v", kvd, c.n_embd);
    L.bq = vec(*e, weights, p + "attn_q.bias", qd, true);
    L.bk = vec(*e, weights, p + "attn_k.bias", kvd, true);
    L.bv = vec(*e, weights, p + "attn_v.bias", kvd, true);
    L.wo = matrix(*e, weights, p + "attn_output", c.n_embd, qd);
    L.ffn_norm = vec(*e, weights, p + "ffn_norm", c.n_embd);
    L.gate = matrix(*e, weights, p + "ffn_gate", c.n_ff, c.n_embd);
    L.up = matrix(*e, weights, p + "ffn_up", c.n_ff, c.n_embd);
    L.down = matrix(*e, weights, p + "ffn_down", c.n_embd, c.n_ff);
    m.layers.push_back(L);
  }
  return m;
}

std::unique_ptr<PyEngine> make_engine(const py::dict& config, const py::dict& weights, int n_threads,
                                      const std::string& simd) {
  auto e = std::make_unique<PyEngine>();
  const cpu::ModelView m = model_view(e->owners, config, weights);
  const SimdPath path = parse_simd_path(simd);
  e->engine = std::make_unique<cpu::CpuEngine>(m, n_threads, path);
  return e;
}

std::unique_lock<std::mutex> claim(std::mutex& busy, const char* what) {
  std::unique_lock<std::mutex> lock(busy, std::try_to_lock);
  if (!lock.owns_lock()) throw std::runtime_error(std::string(what) + ": already running a step in another thread");
  return lock;
}
std::unique_lock<std::mutex> claim(PyEngine& e) { return claim(e.busy, "CpuEngine"); }

// The logits output argument of step()/prefill(): None, or a C-contiguous, writable float32 [n_vocab] array that
// is written in place (no conversion: a converted copy would take the logits and leave the caller's array as it
// was, and the pointer would outlive the copy). The caller keeps `logits` alive for the call.
float* logits_out(const py::object& logits, std::size_t n_vocab) {
  if (logits.is_none()) return nullptr;
  if (!py::isinstance<F32Array>(logits)) {
    throw py::type_error("logits: expected a C-contiguous float32 numpy array (written in place), got " +
                         std::string(py::str(py::type::of(logits).attr("__name__"))) +
                         (py::isinstance<py::array>(logits)
                              ? " of dtype " + std::string(py::str(logits.attr("dtype")))
                              : std::string()));
  }
  auto a = py::reinterpret_borrow<F32Array>(logits);
  if (!a.writeable()) throw py::value_error("logits: the array is read-only");
  require_ndim(a, "logits", 1);
  require_dim(a, "logits", 0, static_cast<py::ssize_t>(n_vocab));
  return a.mutable_data();
}

using TokenArray = py::array_t<long long, py::array::c_style | py::array::forcecast>;

#if defined(EDGELLM_WITH_CUDA)
struct PyGpuEngine {
  std::unique_ptr<cuda::GpuEngine> engine;
  std::mutex busy;
};

cuda::GpuStepMode step_mode_from(const std::string& name) {
  if (name == "graph") return cuda::GpuStepMode::Graph;
  if (name == "persistent") return cuda::GpuStepMode::Persistent;
  throw py::value_error("step_mode: expected 'graph' or 'persistent', got '" + name + "'");
}

// activations: "q8_1" (quantized weights times Q8_1-quantized activations, ggml's rule) or "f32".
bool float_activations_from(const std::string& name) {
  if (name == "q8_1") return false;
  if (name == "f32") return true;
  throw py::value_error("activations: expected 'q8_1' or 'f32', got '" + name + "'");
}

std::unique_ptr<PyGpuEngine> make_gpu_engine(const py::dict& config, const py::dict& weights, bool programmatic,
                                             const std::string& step_mode, const std::string& activations) {
  const cuda::GpuStepMode mode = step_mode_from(step_mode);
  const bool float_activations = float_activations_from(activations);
  Owners owners;  // only during the upload: the GPU engine copies every tensor
  const cpu::ModelView m = model_view(owners, config, weights);
  auto e = std::make_unique<PyGpuEngine>();
  py::gil_scoped_release release;
  e->engine = std::make_unique<cuda::GpuEngine>(m, programmatic, mode, float_activations);
  return e;
}
#endif

// Engine::prefill for the bindings of both engines (the caller holds the engine's lock): `tokens` 1-D and non-empty,
// `logits` None or a writable float32 [n_vocab]; runs without the GIL.
template <class Engine>
long long run_prefill(Engine& engine, const TokenArray& tokens, const py::object& logits) {
  require_ndim(tokens, "tokens", 1);
  const std::size_t n = static_cast<std::size_t>(tokens.shape(0));
  if (n == 0) throw py::value_error("tokens: empty");
  float* out = logits_out(logits, engine.config().n_vocab);
  const long long* t = tokens.data();
  py::gil_scoped_release release;
  return engine.prefill(t, n, out);
}

}  // namespace

void bind_engine(py::module_& m) {
  py::register_exception<cpu::ContextFull>(m, "EngineContextFull", PyExc_ValueError);

  py::class_<PyEngine>(m, "CpuEngine")
      .def(py::init(&make_engine), py::arg("config"), py::arg("weights"), py::arg("n_threads"), py::arg("simd"))
      // Runs one token; fills `logits` (float32 [n_vocab]) when given; returns the argmax, or -1 when
      // want_argmax is False and no logits were asked for (prompt tokens skip the LM head).
      .def(
          "step",
          [](PyEngine& e, long long token, py::object logits, bool want_argmax) {
            auto lock = claim(e);
            float* out = logits_out(logits, e.engine->config().n_vocab);
            py::gil_scoped_release release;
            return e.engine->step(token, out, want_argmax);
          },
          py::arg("token"), py::arg("logits"), py::arg("want_argmax"))
      // Runs every token of `tokens` (1-D ints) in batches; the LM head only for the last one. Checks capacity
      // (EngineContextFull) and ids (IndexError) before running anything. Returns the last token's argmax.
      .def(
          "prefill",
          [](PyEngine& e, const TokenArray& tokens, py::object logits) {
            auto lock = claim(e);
            return run_prefill(*e.engine, tokens, logits);
          },
          py::arg("tokens"), py::arg("logits"))
      .def("truncate", [](PyEngine& e, std::size_t n) {
        auto lock = claim(e);
        e.engine->truncate(n);
      })
      .def_property_readonly("n_past", [](PyEngine& e) { return e.engine->n_past(); })
      .def_property_readonly("max_seq", [](PyEngine& e) { return e.engine->config().max_seq; })
      .def_property_readonly("n_threads", [](PyEngine& e) { return e.engine->n_threads(); })
      .def_property_readonly("simd", [](PyEngine& e) { return std::string(simd_path_name(e.engine->simd_path())); })
      .def_property_readonly("weight_bytes_per_token",
                             [](PyEngine& e) { return e.engine->weight_bytes_per_token(); });

#if defined(EDGELLM_WITH_CUDA)
  // Same interface as CpuEngine (step/prefill/truncate/n_past), on the current CUDA device (gpu_engine.h).
  py::class_<PyGpuEngine>(m, "GpuEngine")
      .def(py::init(&make_gpu_engine), py::arg("config"), py::arg("weights"), py::arg("programmatic_launch") = true,
           py::arg("step_mode") = "graph", py::arg("activations") = "q8_1")
      // want_argmax is accepted for CpuEngine's signature: the GPU step always runs the LM head and the argmax.
      .def(
          "step",
          [](PyGpuEngine& e, long long token, py::object logits, bool /*want_argmax*/) {
            auto lock = claim(e.busy, "GpuEngine");
            float* out = logits_out(logits, e.engine->config().n_vocab);
            py::gil_scoped_release release;
            return e.engine->step(token, out);
          },
          py::arg("token"), py::arg("logits"), py::arg("want_argmax") = true)
      .def(
          "prefill",
          [](PyGpuEngine& e, const TokenArray& tokens, py::object logits) {
            auto lock = claim(e.busy, "GpuEngine");
            return run_prefill(*e.engine, tokens, logits);
          },
          py::arg("tokens"), py::arg("logits"))
      .def("truncate", [](PyGpuEngine& e, std::size_t n) {
        auto lock = claim(e.busy, "GpuEngine");
        e.engine->truncate(n);
      })
      // Pipelined decode (GpuEngine::submit/collect): token None = the previous step's argmax, on the device.
      .def(
          "submit",
          [](PyGpuEngine& e, py::object token) {
            auto lock = claim(e.busy, "GpuEngine");
            long long t = cuda::GpuEngine::kTokenOnDevice;
            if (!token.is_none()) {
              t = token.cast<long long>();
              if (t < 0) throw py::value_error("token: expected an id >= 0 or None, got " + std::to_string(t));
            }
            py::gil_scoped_release release;
            e.engine->submit(t);
          },
          py::arg("token"))
      .def("collect", [](PyGpuEngine& e) {
        auto lock = claim(e.busy, "GpuEngine");
        py::gil_scoped_release release;
        return e.engine->collect();
      })
      .def_property_readonly("in_flight", [](PyGpuEngine& e) { return e.engine->in_flight(); })
      // Tuning aids (tools/engine_probe.py --trace): per-stage timers of either step mode (GpuEngine::stage_trace).
      .def("_enable_stage_trace", [](PyGpuEngine& e) {
        auto lock = claim(e.busy, "GpuEngine");
        e.engine->enable_stage_trace();
      })
      .def("_stage_trace", [](PyGpuEngine& e) {
        auto lock = claim(e.busy, "GpuEngine");
        py::list out;
        for (unsigned long long t : e.engine->stage_trace()) out.append(t);
        return out;
      })
      .def_property_readonly("n_past", [](PyGpuEngine& e) { return e.engine->n_past(); })
      .def_property_readonly("max_seq", [](PyGpuEngine& e) { return e.engine->config().max_seq; })
      .def_property_readonly("weight_bytes_per_token",
                             [](PyGpuEngine& e) { return e.engine->weight_bytes_per_token(); })
      .def_property_readonly("device_bytes", [](PyGpuEngine& e) { return e.engine->device_bytes(); })
      .def_property_readonly("programmatic_launch", [](PyGpuEngine& e) { return e.engine->programmatic_launch(); })
      .def_property_readonly("step_mode",
                             [](PyGpuEngine& e) { return e.engine->persistent() ? "persistent" : "graph"; })
      .def_property_readonly("kernels_per_step", [](PyGpuEngine& e) { return e.engine->kernels_per_step(); })
      .def_property_readonly("fp16_matrices", [](PyGpuEngine& e) { return e.engine->fp16_matrices(); })
      .def_property_readonly("activations",
                             [](PyGpuEngine& e) { return e.engine->float_activations() ? "f32" : "q8_1"; })
      .def_property_readonly("graph_nodes", [](PyGpuEngine& e) { return e.engine->graph_nodes(); })
      .def_property_readonly("last_step_h2d_bytes", [](PyGpuEngine& e) { return e.engine->last_step_h2d_bytes(); })
      .def_property_readonly("last_step_d2h_bytes", [](PyGpuEngine& e) { return e.engine->last_step_d2h_bytes(); });
#else
  bind_unavailable(m, {"GpuEngine"});
#endif
}

}  // namespace edgellm::bindings
