#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "timer.h"

namespace edgellm::cuda {

std::size_t L2Flusher::flush_bytes() {
  int device = 0;
  int l2_bytes = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  return 4 * static_cast<std::size_t>(l2_bytes > 0 ? l2_bytes : (1 << 20));
}

L2Flusher::L2Flusher() : buffer_(flush_bytes()) {}

void L2Flusher::flush(cudaStream_t stream) {
  // Alternate the byte written so that no hardware can skip a write of unchanged data.
  fill_value_ ^= 0x5A;
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(buffer_.data(), fill_value_, buffer_.bytes(), stream));
}

EventPair::EventPair() {
  EDGELLM_CUDA_CHECK(cudaEventCreate(&start_));
  cudaError_t err = cudaEventCreate(&stop_);
  if (err != cudaSuccess) {
    cudaEventDestroy(start_);
    EDGELLM_CUDA_CHECK(err);
  }
}

EventPair::~EventPair() {
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}

void EventPair::record_start(cudaStream_t stream) { EDGELLM_CUDA_CHECK(cudaEventRecord(start_, stream)); }
void EventPair::record_stop(cudaStream_t stream) { EDGELLM_CUDA_CHECK(cudaEventRecord(stop_, stream)); }

float EventPair::elapsed_us() {
  EDGELLM_CUDA_CHECK(cudaEventSynchronize(stop_));
  float ms = 0.0f;
  EDGELLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
  return ms * 1000.0f;
}

namespace {
void require_positive(int value, const char* name, bool allow_zero) {
  if (value < 0 || (!allow_zero && value == 0)) {
    throw std::invalid_argument(std::string(name) + ": expected " + (allow_zero ? ">= 0" : ">= 1") + ", got " +
                                std::to_string(value));
  }
}
}  // namespace

std::vector<float> time_events(Launchable& op, cudaStream_t stream, int warmup, int iterations, L2Flusher* flusher) {
  require_positive(warmup, "warmup", true);
  require_positive(iterations, "iterations", false);
  for (int i = 0; i < warmup; ++i) op.launch(stream);
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> times_us;
  times_us.reserve(iterations);
  EventPair events;
  for (int i = 0; i < iterations; ++i) {
    if (flusher != nullptr) flusher->flush(stream);
    events.record_start(stream);
    op.launch(stream);
    events.record_stop(stream);
    times_us.push_back(events.elapsed_us());
  }
  return times_us;
}

namespace {
// Owns a captured graph and its executable instance.
class Graph {
 public:
  Graph(Launchable& op, cudaStream_t stream, int launches) {
    EDGELLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      for (int i = 0; i < launches; ++i) op.launch(stream);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream, &broken);
      if (broken != nullptr) cudaGraphDestroy(broken);
      throw;
    }
    EDGELLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph_));
    EDGELLM_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  ~Graph() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void replay(cudaStream_t stream) { EDGELLM_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};
}  // namespace

std::vector<float> time_graph(Launchable& op, cudaStream_t stream, int launches_per_graph, int warmup, int replays) {
  require_positive(launches_per_graph, "launches_per_graph", false);
  require_positive(warmup, "warmup", true);
  require_positive(replays, "replays", false);
  if (stream == nullptr) {
    throw std::invalid_argument("time_graph: CUDA graphs cannot be captured on the legacy default stream; pass a stream");
  }
  Graph graph(op, stream, launches_per_graph);
  for (int i = 0; i < warmup; ++i) graph.replay(stream);
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> per_launch_us;
  per_launch_us.reserve(replays);
  EventPair events;
  for (int i = 0; i < replays; ++i) {
    events.record_start(stream);
    graph.replay(stream);
    events.record_stop(stream);
    per_launch_us.push_back(events.elapsed_us() / static_cast<float>(launches_per_graph));
  }
  return per_launch_us;
}

}  // namespace edgellm::cuda
