// Device memory owned by an object (RAII): the way edgellm_ext keeps weights, caches and workspaces resident.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace edgellm::cuda {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes);  // bytes may be 0 (no allocation)
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(data_); }
  std::size_t bytes() const { return bytes_; }

  // Host <-> device copies of `bytes` at byte offset `offset`, ordered on `stream`, then synchronised with it.
  void copy_from_host(const void* host, std::size_t bytes, std::size_t offset, cudaStream_t stream);
  void copy_to_host(void* host, std::size_t bytes, std::size_t offset, cudaStream_t stream) const;
  // Every byte set to `value` (0xFF makes every fp16/bf16/fp32 element NaN: the test poison).
  void fill_bytes(int value, cudaStream_t stream);

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace edgellm::cuda
