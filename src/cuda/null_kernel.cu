// The timing harness's floors (null_kernel.h): an empty kernel (launch + event overhead, and the per-node cost
// inside a CUDA graph) and a read-once kernel (that plus one cold read of a given number of bytes).
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "null_kernel.h"

namespace edgellm::cuda {
namespace {

constexpr int kColdReadThreads = 256;

__global__ void null_kernel() {}

// Thread i loads vector i; a vector of all ones (never in the benchmark's zero-filled buffers) is stored to sink.
__global__ void cold_read_kernel(const uint4* __restrict__ src, std::size_t vectors, uint4* __restrict__ sink) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= vectors) return;
  const uint4 v = src[i];
  if ((v.x & v.y & v.z & v.w) == 0xffffffffu) *sink = v;
}

}  // namespace

void NullKernelOp::launch(cudaStream_t stream) {
  null_kernel<<<1, 32, 0, stream>>>();
  EDGELLM_CUDA_CHECK_LAUNCH("null_kernel");
}

ColdReadOp::ColdReadOp(std::uintptr_t src, std::size_t bytes, std::uintptr_t sink)
    : src_(reinterpret_cast<const void*>(src)), vectors_(bytes / 16), sink_(reinterpret_cast<void*>(sink)) {
  if (src == 0 || src % 16 != 0) throw std::invalid_argument("src: device pointer must be non-null and 16-byte aligned");
  if (sink == 0 || sink % 16 != 0) throw std::invalid_argument("sink: device pointer must be non-null and 16-byte aligned");
  if (bytes == 0 || bytes % 16 != 0) {
    throw std::invalid_argument("bytes: expected a positive multiple of 16, got " + std::to_string(bytes));
  }
}

void ColdReadOp::launch(cudaStream_t stream) {
  const std::size_t blocks = (vectors_ + kColdReadThreads - 1) / kColdReadThreads;
  cold_read_kernel<<<static_cast<unsigned>(blocks), kColdReadThreads, 0, stream>>>(
      static_cast<const uint4*>(src_), vectors_, static_cast<uint4*>(sink_));
  EDGELLM_CUDA_CHECK_LAUNCH("cold_read_kernel");
}

}  // namespace edgellm::cuda
