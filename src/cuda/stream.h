// A CUDA stream owned by an object (non-blocking with respect to the legacy default stream).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "cuda_check.h"

namespace edgellm::cuda {

class Stream {
 public:
  Stream() { EDGELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  std::uintptr_t handle() const { return reinterpret_cast<std::uintptr_t>(stream_); }
  void synchronize() const { EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace edgellm::cuda
