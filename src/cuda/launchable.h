// An operation whose arguments (device pointers, shapes, workspace) are fixed when it is built, so that it can be
// launched many times on a stream: timed with CUDA events recorded from C++ (no Python between the events) and
// captured into CUDA graphs. Every GPU kernel family exposes its "prepared" form as a Launchable.
#pragma once

#include <cuda_runtime.h>

namespace edgellm::cuda {

class Launchable {
 public:
  virtual ~Launchable() = default;
  // Enqueue the operation on `stream`; must not synchronise (so that it can be captured in a graph).
  virtual void launch(cudaStream_t stream) = 0;
  // Kernel launches (graph nodes) one call of launch() makes.
  virtual int kernels_per_launch() const { return 1; }
};

}  // namespace edgellm::cuda
