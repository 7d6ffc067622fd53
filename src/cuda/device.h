// Device discovery with no CUDA types in the interface, so that the bindings need no CUDA headers.
#pragma once

#include <cstddef>
#include <string>

namespace edgellm::cuda {

// Number of usable CUDA devices; 0 (not an error) when there is no driver or no device.
int device_count();

struct DeviceInfo {
  std::string name;
  int ordinal = 0;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessor_count = 0;
  std::size_t l2_cache_bytes = 0;
  std::size_t global_memory_bytes = 0;
  std::size_t shared_memory_per_block_optin_bytes = 0;
  int runtime_version = 0;  // e.g. 13000 for CUDA 13.0
  int driver_version = 0;
};

// Throws std::runtime_error (naming the CUDA error) when the device cannot be queried.
DeviceInfo device_info(int ordinal);

}  // namespace edgellm::cuda
