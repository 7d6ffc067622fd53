// The one checking macro for CUDA runtime calls and launches. A failure throws std::runtime_error naming the
// operation, the call, the CUDA error and where it happened; the bindings turn it into a Python RuntimeError.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace edgellm::cuda {

inline void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                             ") in " + call + " at " + file + ":" + std::to_string(line));
  }
}

}  // namespace edgellm::cuda

#define EDGELLM_CUDA_CHECK(call) ::edgellm::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface at the next
// synchronising call, which is checked too).
#define EDGELLM_CUDA_CHECK_LAUNCH(name) ::edgellm::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)
