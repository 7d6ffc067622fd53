// CUDA infrastructure: device discovery, owned device memory and streams, and the timers every GPU benchmark uses.
#include "bindings/bindings.h"

#if defined(EDGELLM_WITH_CUDA)
#include "cuda_check.h"
#include "device.h"
#include "device_buffer.h"
#include "launchable.h"
#include "null_kernel.h"
#include "stream.h"
#include "timer.h"
#endif

namespace edgellm::bindings {

void bind_cuda(py::module_& m) {
#if defined(EDGELLM_WITH_CUDA)
  using namespace edgellm::cuda;
  m.def("cuda_compiled", []() { return true; });
  m.def("cuda_device_count", []() { return device_count(); });
  m.def("cuda_device_info", [](int ordinal) {
    const DeviceInfo d = device_info(ordinal);
    py::dict info;
    info["name"] = d.name;
    info["ordinal"] = d.ordinal;
    info["compute_capability"] = py::make_tuple(d.compute_capability_major, d.compute_capability_minor);
    info["multiprocessor_count"] = d.multiprocessor_count;
    info["l2_cache_bytes"] = d.l2_cache_bytes;
    info["global_memory_bytes"] = d.global_memory_bytes;
    info["shared_memory_per_block_optin_bytes"] = d.shared_memory_per_block_optin_bytes;
    info["runtime_version"] = d.runtime_version;
    info["driver_version"] = d.driver_version;
    return info;
  });

  py::class_<Launchable>(m, "Launchable")
      .def("launch", [](Launchable& op, std::uintptr_t stream) { op.launch(as_stream(stream)); }, py::arg("stream"))
      .def_property_readonly("kernels_per_launch", &Launchable::kernels_per_launch);

  py::class_<NullKernelOp, Launchable>(m, "NullKernelOp").def(py::init<>());
  py::class_<ColdReadOp, Launchable>(m, "ColdReadOp")
      .def(py::init<std::uintptr_t, std::size_t, std::uintptr_t>(), py::arg("src"), py::arg("bytes"), py::arg("sink"));

  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<std::size_t>(), py::arg("nbytes"))
      .def_property_readonly("address", &DeviceBuffer::address)
      .def_property_readonly("nbytes", &DeviceBuffer::bytes)
      .def(
          "copy_from_host",
          [](DeviceBuffer& buf, const py::array& host, std::size_t offset, std::uintptr_t stream) {
            if (!(host.flags() & py::array::c_style)) throw py::value_error("host: must be C-contiguous");
            buf.copy_from_host(host.data(), static_cast<std::size_t>(host.nbytes()), offset, as_stream(stream));
          },
          py::arg("host"), py::arg("offset"), py::arg("stream"))
      .def(
          "copy_to_host",
          [](const DeviceBuffer& buf, py::array& host, std::size_t offset, std::uintptr_t stream) {
            if (!(host.flags() & py::array::c_style)) throw py::value_error("host: must be C-contiguous");
            if (!host.writeable()) throw py::value_error("host: must be writable");
            buf.copy_to_host(host.mutable_data(), static_cast<std::size_t>(host.nbytes()), offset, as_stream(stream));
          },
          py::arg("host"), py::arg("offset"), py::arg("stream"))
      .def(
          "fill_bytes", [](DeviceBuffer& buf, int value, std::uintptr_t stream) { buf.fill_bytes(value, as_stream(stream)); },
          py::arg("value"), py::arg("stream"));

  py::class_<Stream>(m, "Stream")
      .def(py::init<>())
      .def_property_readonly("handle", &Stream::handle)
      .def("synchronize", [](const Stream& s) {
        py::gil_scoped_release release;
        s.synchronize();
      });

  m.def(
      "stream_synchronize",
      [](std::uintptr_t stream) {
        py::gil_scoped_release release;
        EDGELLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
      },
      py::arg("stream"));

  py::class_<L2Flusher>(m, "L2Flusher")
      .def(py::init<>())
      .def_property_readonly("nbytes", &L2Flusher::bytes)
      .def("flush", [](L2Flusher& f, std::uintptr_t stream) { f.flush(as_stream(stream)); }, py::arg("stream"));

  py::class_<EventPair>(m, "EventPair")
      .def(py::init<>())
      .def("record_start", [](EventPair& e, std::uintptr_t stream) { e.record_start(as_stream(stream)); })
      .def("record_stop", [](EventPair& e, std::uintptr_t stream) { e.record_stop(as_stream(stream)); })
      .def("elapsed_us", [](EventPair& e) {
        py::gil_scoped_release release;
        return e.elapsed_us();
      });

  m.def(
      "time_events",
      [](Launchable& op, std::uintptr_t stream, int warmup, int iterations, L2Flusher* flusher) {
        std::vector<float> times;
        {
          py::gil_scoped_release release;
          times = time_events(op, as_stream(stream), warmup, iterations, flusher);
        }
        return py::array_t<float>(static_cast<py::ssize_t>(times.size()), times.data());
      },
      py::arg("op"), py::arg("stream"), py::arg("warmup"), py::arg("iterations"), py::arg("flusher").none(true));

  m.def(
      "time_graph",
      [](Launchable& op, std::uintptr_t stream, int launches_per_graph, int warmup, int replays) {
        std::vector<float> times;
        {
          py::gil_scoped_release release;
          times = time_graph(op, as_stream(stream), launches_per_graph, warmup, replays);
        }
        return py::array_t<float>(static_cast<py::ssize_t>(times.size()), times.data());
      },
      py::arg("op"), py::arg("stream"), py::arg("launches_per_graph"), py::arg("warmup"), py::arg("replays"));
#else
  m.def("cuda_compiled", []() { return false; });
  m.def("cuda_device_count", []() { return 0; });
  bind_unavailable(m, {"cuda_device_info", "Launchable", "NullKernelOp", "ColdReadOp", "DeviceBuffer", "Stream",
                       "stream_synchronize", "L2Flusher", "EventPair", "time_events", "time_graph"});
#endif
}

}  // namespace edgellm::bindings
