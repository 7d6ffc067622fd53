// Programmatic dependent launch (sm_90+): a kernel lets the next one in the stream start (trigger), and a kernel
// launched with programmatic stream serialization reads nothing the previous kernels wrote before wait() (which
// returns once they have completed and their writes are visible). Elsewhere both are no-ops and the host does not
// set the launch attribute (its callers check the compute capability).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace edgellm::cuda {

// A launch configuration for cudaLaunchKernelEx(C), with programmatic stream serialization when `programmatic`;
// `attr` holds the attribute and must outlive the launch call.
inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, std::size_t smem_bytes, cudaStream_t stream,
                                        bool programmatic, cudaLaunchAttribute& attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem_bytes;
  cfg.stream = stream;
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = programmatic ? 1 : 0;
  return cfg;
}

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
