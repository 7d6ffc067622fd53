#pragma once

#include "launchable.h"

namespace edgellm::cuda {

// One launch of an empty kernel (1 block of 32 threads).
class NullKernelOp : public Launchable {
 public:
  void launch(cudaStream_t stream) override;
};

}  // namespace edgellm::cuda
