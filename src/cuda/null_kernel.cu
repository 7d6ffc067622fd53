// An empty kernel as a Launchable: measures the timing harness's own floor (launch + event overhead, and the
// per-node cost inside a CUDA graph).
#include "cuda_check.h"
#include "null_kernel.h"

namespace edgellm::cuda {
namespace {
__global__ void null_kernel() {}
}  // namespace

void NullKernelOp::launch(cudaStream_t stream) {
  null_kernel<<<1, 32, 0, stream>>>();
  EDGELLM_CUDA_CHECK_LAUNCH("null_kernel");
}

}  // namespace edgellm::cuda
