// Instantiates the GEMV / fused RMSNorm + GEMV kernels for __half weights (gemv_kernels.cuh has the kernels;
// one translation unit per weight dtype so that the two halves compile in parallel).
#include "gemv_kernels.cuh"

namespace edgellm::cuda::gemv_detail {

template void launch_gemv_for_weight<__half>(const GemvArgs&, DType, bool, GemvVariant, dim3, dim3, cudaStream_t);

}  // namespace edgellm::cuda::gemv_detail
