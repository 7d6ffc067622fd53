// fa2_decode kernel instantiations for __half storage (see fa2_decode_kernel.cuh).
#include "fa2_decode_kernel.cuh"

namespace edgellm::cuda::fa2_detail {

Fa2Kernel kernel_f16(int head_dim, int hpb, Fa2Variant variant) {
  return choice_for_dim<__half>(head_dim, hpb, variant);
}

}  // namespace edgellm::cuda::fa2_detail
