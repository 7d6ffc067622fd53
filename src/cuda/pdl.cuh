// Programmatic dependent launch (sm_90+), device side: a kernel lets the next one in the stream start (trigger),
// and a kernel launched with programmatic stream serialization reads nothing the previous kernels wrote before
// wait() (which returns once they have completed and their writes are visible). Elsewhere both are no-ops and the
// host does not set the launch attribute (it checks the compute capability).
#pragma once

namespace edgellm::cuda {

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

}  // namespace edgellm::cuda
