// Programmatic dependent launch (sm_90+): a kernel lets the next one in the stream start (trigger), and a kernel
// launched with programmatic stream serialization reads nothing the previous kernels wrote before wait() (which
// returns once they have completed and their writes are visible). Elsewhere both are no-ops and the host does not
// set the launch attribute (its callers check the compute capability).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace edgellm::cuda {

// Launch attributes for launch_config (they must outlive the launch call).
struct LaunchAttrs {
  cudaLaunchAttribute attr[2];
};

// A launch configuration for cudaLaunchKernelEx(C): programmatic stream serialization when `programmatic`;
// clusters of `cluster_x` consecutive blocks along x when cluster_x > 1 (sm_90+; the grid's x a multiple of it).
inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, std::size_t smem_bytes, cudaStream_t stream,
                                        bool programmatic, LaunchAttrs& attrs, int cluster_x = 1) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem_bytes;
  cfg.stream = stream;
  cfg.attrs = attrs.attr;
  cfg.numAttrs = 0;
  if (programmatic) {
    cudaLaunchAttribute& a = attrs.attr[cfg.numAttrs++];
    a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    a.val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) {
    cudaLaunchAttribute& a = attrs.attr[cfg.numAttrs++];
    a.id = cudaLaunchAttributeClusterDimension;
    a.val.clusterDim.x = static_cast<unsigned>(cluster_x);
    a.val.clusterDim.y = 1;
    a.val.clusterDim.z = 1;
  }
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
