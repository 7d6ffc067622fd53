#include "cuda_check.h"
#include "device.h"

namespace edgellm::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error so later calls start clean
    return 0;
  }
  return count;
}

DeviceInfo device_info(int ordinal) {
  cudaDeviceProp prop{};
  EDGELLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
  DeviceInfo info;
  info.name = prop.name;
  info.ordinal = ordinal;
  info.compute_capability_major = prop.major;
  info.compute_capability_minor = prop.minor;
  info.multiprocessor_count = prop.multiProcessorCount;
  info.l2_cache_bytes = static_cast<std::size_t>(prop.l2CacheSize);
  info.global_memory_bytes = prop.totalGlobalMem;
  info.shared_memory_per_block_optin_bytes = prop.sharedMemPerBlockOptin;
  EDGELLM_CUDA_CHECK(cudaRuntimeGetVersion(&info.runtime_version));
  EDGELLM_CUDA_CHECK(cudaDriverGetVersion(&info.driver_version));
  return info;
}

}  // namespace edgellm::cuda
