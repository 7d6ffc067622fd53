// The timing harness's floors, as Launchables: an empty kernel, and a kernel that only reads a buffer once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "launchable.h"

namespace edgellm::cuda {

// One launch of an empty kernel (1 block of 32 threads).
class NullKernelOp : public Launchable {
 public:
  void launch(cudaStream_t stream) override;
};

// Reads `bytes` of device memory at `src` once, 16 bytes per thread, every load independent (ceil(bytes / 4096)
// blocks of 256 threads: all of them in flight at once as far as the device allows), and writes to `sink` (16 bytes)
// only if some 16-byte vector is all ones, so that the loads cannot be optimised away. With L2 flushed before it
// (the events timer), its time is a floor for any kernel that must read those bytes: launch, one cold DRAM round
// trip, the bytes at the device's bandwidth. Validated (std::invalid_argument): src and sink non-null and 16-byte
// aligned, bytes a positive multiple of 16.
class ColdReadOp : public Launchable {
 public:
  ColdReadOp(std::uintptr_t src, std::size_t bytes, std::uintptr_t sink);
  void launch(cudaStream_t stream) override;

 private:
  const void* src_;
  std::size_t vectors_;
  void* sink_;
};

}  // namespace edgellm::cuda
