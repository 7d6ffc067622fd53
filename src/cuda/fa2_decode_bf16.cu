// fa2_decode kernel instantiations for __nv_bfloat16 storage (see fa2_decode_kernel.cuh).
#include "fa2_decode_kernel.cuh"

namespace edgellm::cuda::fa2_detail {

Fa2Kernel kernel_bf16(int head_dim, int hpb, Fa2Variant variant) {
  return choice_for_dim<__nv_bfloat16>(head_dim, hpb, variant);
}

}  // namespace edgellm::cuda::fa2_detail
