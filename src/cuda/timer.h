// GPU timing used by every GPU benchmark (methodology: NVIDIA nvbench's cold measurements).
//
// time_events: `warmup` untimed launches, then `iterations` timed launches, each bracketed by two CUDA events
//   recorded from C++ right around op.launch() (no Python between the events). With an L2Flusher, the whole L2 is
//   overwritten (a memset of a buffer 4x the L2 size, as in ../shared/reference/anchors.md) before every timed
//   launch, outside the events, so each launch reads its inputs from device memory ("cold"). Returns one time per
//   iteration, in microseconds.
// time_graph: captures `launches_per_graph` back-to-back launches into one CUDA graph, replays it `warmup` times
//   untimed and `replays` times timed (events around each replay), and returns replay time / launches_per_graph in
//   microseconds: the per-launch cost with the launch overhead removed (warm L2: the graph replays back to back).
#pragma once

#include <vector>

#include <cuda_runtime.h>

#include "device_buffer.h"
#include "launchable.h"

namespace edgellm::cuda {

class L2Flusher {
 public:
  // Sizes its buffer from cudaDevAttrL2CacheSize of the current device.
  L2Flusher();
  void flush(cudaStream_t stream);
  std::size_t bytes() const { return buffer_.bytes(); }

 private:
  static std::size_t flush_bytes();
  DeviceBuffer buffer_;
  int fill_value_ = 0;
};

// Two events on one stream; elapsed time in microseconds after the stop event completed.
class EventPair {
 public:
  EventPair();
  ~EventPair();
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  void record_start(cudaStream_t stream);
  void record_stop(cudaStream_t stream);
  float elapsed_us();  // synchronises on the stop event

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

std::vector<float> time_events(Launchable& op, cudaStream_t stream, int warmup, int iterations, L2Flusher* flusher);
std::vector<float> time_graph(Launchable& op, cudaStream_t stream, int launches_per_graph, int warmup, int replays);

}  // namespace edgellm::cuda
