// fa2_decode kernel instantiations for float storage (see fa2_decode_kernel.cuh).
#include "fa2_decode_kernel.cuh"

namespace edgellm::cuda::fa2_detail {

Fa2Kernel kernel_f32(int head_dim, int hpb, Fa2Variant variant) {
  return choice_for_dim<float>(head_dim, hpb, variant);
}

}  // namespace edgellm::cuda::fa2_detail
