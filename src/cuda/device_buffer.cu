#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "device_buffer.h"

namespace edgellm::cuda {

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) EDGELLM_CUDA_CHECK(cudaMalloc(&data_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);  // no throw from a destructor; a failed free leaves nothing to do
}

namespace {
void check_range(std::size_t offset, std::size_t bytes, std::size_t size, const char* what) {
  if (offset > size || bytes > size - offset) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(bytes) + " bytes at offset " +
                                std::to_string(offset) + " exceed the buffer's " + std::to_string(size) + " bytes");
  }
}
}  // namespace

void DeviceBuffer::copy_from_host(const void* host, std::size_t bytes, std::size_t offset, cudaStream_t stream) {
  check_range(offset, bytes, bytes_, "copy_from_host");
  if (bytes == 0) return;
  EDGELLM_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(data_) + offset, host, bytes, cudaMemcpyHostToDevice, stream));
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void DeviceBuffer::copy_to_host(void* host, std::size_t bytes, std::size_t offset, cudaStream_t stream) const {
  check_range(offset, bytes, bytes_, "copy_to_host");
  if (bytes == 0) return;
  EDGELLM_CUDA_CHECK(cudaMemcpyAsync(host, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyDeviceToHost, stream));
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void DeviceBuffer::fill_bytes(int value, cudaStream_t stream) {
  if (bytes_ == 0) return;
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(data_, value, bytes_, stream));
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace edgellm::cuda
