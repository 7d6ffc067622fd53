// Prepared ops of the GEMV / fused RMSNorm + GEMV family (fused_rmsnorm_gemv.h), the "auto" crossover table,
// and the standalone RMSNorm kernel (the first of the two launches that the fused kernel replaces).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "fused_rmsnorm_gemv.h"
#include "gemv_kernels.cuh"

namespace edgellm::cuda {

namespace gemv_detail {
// Instantiated in gemv_f16.cu / gemv_bf16.cu.
extern template void launch_gemv_for_weight<__half>(const GemvArgs&, DType, bool, GemvVariant, dim3, dim3, cudaStream_t);
extern template void launch_gemv_for_weight<__nv_bfloat16>(const GemvArgs&, DType, bool, GemvVariant, dim3, dim3,
                                                           cudaStream_t);
}  // namespace gemv_detail

DType parse_dtype(const std::string& name) {
  if (name == "float16") return DType::F16;
  if (name == "bfloat16") return DType::BF16;
  if (name == "float32") return DType::F32;
  throw std::invalid_argument("dtype: expected 'float16', 'bfloat16' or 'float32', got '" + name + "'");
}

std::size_t dtype_bytes(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

GemvVariant parse_gemv_variant(const std::string& name) {
  if (name == "auto") return GemvVariant::Auto;
  if (name == "warp") return GemvVariant::Warp;
  if (name == "block") return GemvVariant::Block;
  if (name == "scalar") return GemvVariant::Scalar;
  if (name == "shared") return GemvVariant::Shared;
  throw std::invalid_argument("variant: expected 'auto', 'warp', 'block', 'scalar' or 'shared', got '" + name + "'");
}

const char* gemv_variant_name(GemvVariant variant) {
  switch (variant) {
    case GemvVariant::Auto: return "auto";
    case GemvVariant::Warp: return "warp";
    case GemvVariant::Block: return "block";
    case GemvVariant::Scalar: return "scalar";
    case GemvVariant::Shared: return "shared";
  }
  return "?";
}

// ------------------------------------------------------------------------------------- crossover table
// Measured on an H200 (132 SMs), batch 1, fp16, CUDA events with the L2 flushed, every variant on the 11 anchor
// shapes (python tools/sweep_variants.py; bench/results/nvidia-h200/gemv_variants_sweep.md): "block" (K split
// over 256 threads per row group) beat "warp" (whole K per warp) on every shape with K >= 4096 (4096x4096:
// 14.5 vs 18.3 us; 14336x4096: 33.2 vs 38.9; 896x4864: 7.6 vs 13.5; 1536x8960: 15.2 vs 22.4) and on every shape
// with at most ~1000 rows (960x576: 4.8 vs 5.2; 576x576: 4.6 vs 5.1; 576x1536: 5.1 vs 6.7); "warp" won on the
// many-row, short-K shapes (3072x576: 6.1 vs 7.7; 49152x576: 19.9 vs 54.1; 9728x896: 11.0 vs 15.3; 17920x1536:
// 20.8 vs 25.9). In warps: "block" when the warp variant has fewer than kMinWarpsPerSm warps per SM, or K >=
// kMinKForBlock. Batch 2..8 follows the same rule (not swept separately).
// At batch 1 "shared" (the warp split with x staged once per block) replaces "warp" there: in the thirteenth
// session's sweep it beat "warp" on all four of those shapes fused (49152x576: 19.1 vs 22.4 us; 3072x576: 6.5 vs
// 6.8; 9728x896: 10.3 vs 12.1; 17920x1536: 19.7 vs 22.5) and on the two K > 576 ones plain (10.6 vs 11.1; 20.2 vs
// 20.9), and lost plain on the K = 576 ones by 2% (6.3 vs 6.2; 20.5 vs 20.1). It lost to "block" on every shape
// "block" wins.
namespace {
constexpr std::int64_t kMinWarpsPerSm = 4;    // 960 rows = 480 warps < 4 x 132; 3072 rows = 1536 warps
constexpr std::int64_t kMinKForBlock = 4096;  // every K >= 4096 shape was faster with "block"
}  // namespace

GemvVariant choose_gemv_variant(std::int64_t m, std::int64_t k, int batch, int sm_count) {
  const int rows = gemv_detail::rows_per_group(gemv_detail::max_batch_for(batch));
  const std::int64_t warp_variant_warps = (m + rows - 1) / rows;
  if (warp_variant_warps < kMinWarpsPerSm * sm_count || k >= kMinKForBlock) return GemvVariant::Block;
  return batch == 1 && k <= kGemvSharedMaxK ? GemvVariant::Shared : GemvVariant::Warp;
}

namespace {

int current_sm_count() {
  int device = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  int sms = 0;
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlaps(std::uintptr_t a, std::size_t a_bytes, std::uintptr_t b, std::size_t b_bytes) {
  return a < b + b_bytes && b < a + a_bytes;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

GemvOp::GemvOp(std::uintptr_t w_address, DType w_dtype, std::uintptr_t x_address, DType x_dtype,
               std::uintptr_t g_address, std::uintptr_t y_address, std::int64_t m, std::int64_t k, int batch,
               bool norm, float eps, GemvVariant variant)
    : w_(reinterpret_cast<const void*>(w_address)),
      x_(reinterpret_cast<const void*>(x_address)),
      g_(reinterpret_cast<const void*>(g_address)),
      y_(reinterpret_cast<void*>(y_address)),
      w_dtype_(w_dtype),
      x_dtype_(x_dtype),
      m_(m),
      k_(k),
      batch_(batch),
      norm_(norm),
      eps_(eps),
      variant_(variant) {
  const std::string op = norm ? "fused_rmsnorm_matmul" : "gemv";
  require(w_dtype == DType::F16 || w_dtype == DType::BF16, op + ": weights must be float16 or bfloat16");
  require(m >= 1 && m < std::numeric_limits<std::int32_t>::max(), op + ": M must be in [1, 2^31), got " + std::to_string(m));
  require(k >= 1 && k < std::numeric_limits<std::int32_t>::max(), op + ": K must be in [1, 2^31), got " + std::to_string(k));
  require(batch >= 1 && batch <= 8, op + ": batch must be in [1, 8], got " + std::to_string(batch));
  require(w_address != 0 && x_address != 0 && y_address != 0, op + ": null device address");
  const std::size_t xs = dtype_bytes(x_dtype);
  require(w_address % 2 == 0 && x_address % xs == 0 && y_address % xs == 0,
          op + ": addresses must be aligned to their element size");
  if (norm) {
    require(g_address != 0 && g_address % xs == 0, op + ": g needs a non-null address aligned to its element size");
    require(std::isfinite(eps) && eps >= 0.0f, op + ": eps must be finite and >= 0, got " + std::to_string(eps));
  } else {
    g_ = nullptr;
  }
  // Every block reads all of x (and g) while other blocks write y: y may not alias any input.
  const std::size_t y_bytes = static_cast<std::size_t>(batch) * static_cast<std::size_t>(m) * xs;
  const std::size_t x_bytes = static_cast<std::size_t>(batch) * static_cast<std::size_t>(k) * xs;
  const std::size_t w_bytes = static_cast<std::size_t>(m) * static_cast<std::size_t>(k) * dtype_bytes(w_dtype);
  require(!overlaps(y_address, y_bytes, x_address, x_bytes) && !overlaps(y_address, y_bytes, w_address, w_bytes) &&
              !(norm && overlaps(y_address, y_bytes, g_address, static_cast<std::size_t>(k) * xs)),
          op + ": y must not overlap x, w or g");

  const bool vector_ok =
      k % gemv_detail::kChunkElems == 0 && aligned16(w_) && aligned16(x_) && (!norm || aligned16(g_));
  if (variant_ == GemvVariant::Auto) {
    variant_ = vector_ok ? choose_gemv_variant(m, k, batch, current_sm_count()) : GemvVariant::Scalar;
  } else if (variant_ != GemvVariant::Scalar) {
    require(vector_ok, op + ": variant '" + gemv_variant_name(variant_) +
                           "' needs K % 8 == 0 and 16-byte aligned w, x and g (got K=" + std::to_string(k) +
                           "); use 'auto' or 'scalar'");
  }
  if (variant_ == GemvVariant::Shared) {
    require(batch == 1 && k <= kGemvSharedMaxK,
            op + ": variant 'shared' needs batch 1 and K <= " + std::to_string(kGemvSharedMaxK) +
                " (got batch " + std::to_string(batch) + ", K=" + std::to_string(k) + ")");
  }

  switch (variant_) {
    case GemvVariant::Warp: {
      // Fewer warps per block when M is small, so that the blocks spread over (about twice) every SM.
      const std::int64_t warps = ceil_div(m, gemv_detail::rows_per_group(gemv_detail::max_batch_for(batch)));
      const std::int64_t target_blocks = 2 * static_cast<std::int64_t>(current_sm_count());
      int wpb = 8;
      while (wpb > 1 && ceil_div(warps, wpb) < target_blocks) wpb /= 2;
      block_ = wpb * gemv_detail::kWarpSize;
      grid_ = static_cast<int>(ceil_div(warps, wpb));
      break;
    }
    case GemvVariant::Block:
      block_ = gemv_detail::kSplitWarps * gemv_detail::kWarpSize;
      grid_ = static_cast<int>(ceil_div(m, gemv_detail::rows_per_group(gemv_detail::max_batch_for(batch))));
      break;
    case GemvVariant::Scalar:
      block_ = gemv_detail::kScalarWarps * gemv_detail::kWarpSize;
      grid_ = static_cast<int>(ceil_div(m, gemv_detail::kScalarWarps));
      break;
    case GemvVariant::Shared:
      block_ = 8 * gemv_detail::kWarpSize;
      grid_ = static_cast<int>(ceil_div(m, 8 * gemv_detail::rows_per_group(1)));
      break;
    case GemvVariant::Auto: break;  // resolved above
  }
}

void GemvOp::launch(cudaStream_t stream) {
  const gemv_detail::GemvArgs args{w_, x_, g_, y_, m_, k_, batch_, eps_};
  const dim3 grid(static_cast<unsigned>(grid_));
  const dim3 block(static_cast<unsigned>(block_));
  if (w_dtype_ == DType::F16) {
    gemv_detail::launch_gemv_for_weight<__half>(args, x_dtype_, norm_, variant_, grid, block, stream);
  } else {
    gemv_detail::launch_gemv_for_weight<__nv_bfloat16>(args, x_dtype_, norm_, variant_, grid, block, stream);
  }
}

std::size_t GemvOp::bytes_moved() const {
  const std::size_t xs = dtype_bytes(x_dtype_);
  const auto m = static_cast<std::size_t>(m_), k = static_cast<std::size_t>(k_), b = static_cast<std::size_t>(batch_);
  return m * k * dtype_bytes(w_dtype_) + b * k * xs + (norm_ ? k * xs : 0) + b * m * xs;
}

std::size_t GemvOp::activation_reads_bytes() const {
  const std::size_t per_group = (static_cast<std::size_t>(batch_) + (norm_ ? 1 : 0)) * static_cast<std::size_t>(k_) *
                                dtype_bytes(x_dtype_);
  if (variant_ == GemvVariant::Shared) return static_cast<std::size_t>(grid_) * per_group;  // once per block
  const std::int64_t rows_per_group =
      variant_ == GemvVariant::Scalar ? 1 : gemv_detail::rows_per_group(gemv_detail::max_batch_for(batch_));
  return static_cast<std::size_t>(ceil_div(m_, rows_per_group)) * per_group;
}

// ---------------------------------------------------------------------------------------------- RMSNorm
namespace {

constexpr int kRmsnormMaxThreads = 1024;

// out[b, :] = x[b, :] * inv_rms[b] * g. Block b handles row b: pass 1 sums x^2 (block reduction through a
// 32-float shared array: one slot per warp, fixed by the block size limit, not by K), pass 2 re-reads x
// (L1/L2-resident) and writes. Launch: grid = B, block = 32..1024 threads (a multiple of 32).
template <typename TX>
__global__ void __launch_bounds__(kRmsnormMaxThreads) rmsnorm_kernel(const TX* x, const TX* g, TX* out, std::int64_t k,
                                                                      float eps) {
  __shared__ float warp_sums[kRmsnormMaxThreads / gemv_detail::kWarpSize];
  __shared__ float total;
  const TX* xr = x + blockIdx.x * k;
  TX* orow = out + blockIdx.x * k;
  float sum_sq = 0.0f;
  for (std::int64_t e = threadIdx.x; e < k; e += blockDim.x) {
    const float v = gemv_detail::to_f32(xr[e]);
    sum_sq = fmaf(v, v, sum_sq);
  }
  sum_sq = gemv_detail::warp_sum(sum_sq);
  const int lane = threadIdx.x % gemv_detail::kWarpSize;
  const int warp = threadIdx.x / gemv_detail::kWarpSize;
  if (lane == 0) warp_sums[warp] = sum_sq;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / gemv_detail::kWarpSize;
    float v = lane < warps ? warp_sums[lane] : 0.0f;
    v = gemv_detail::warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const float scale = gemv_detail::inv_rms(total, k, eps);
  for (std::int64_t e = threadIdx.x; e < k; e += blockDim.x) {
    const float v = gemv_detail::to_f32(xr[e]) * scale * gemv_detail::to_f32(g[e]);
    orow[e] = gemv_detail::from_f32<TX>(v);
  }
}

}  // namespace

RmsnormOp::RmsnormOp(std::uintptr_t x_address, DType dtype, std::uintptr_t g_address, std::uintptr_t out_address,
                     std::int64_t k, int batch, float eps)
    : x_(reinterpret_cast<const void*>(x_address)),
      g_(reinterpret_cast<const void*>(g_address)),
      out_(reinterpret_cast<void*>(out_address)),
      dtype_(dtype),
      k_(k),
      batch_(batch),
      eps_(eps) {
  require(k >= 1 && k < std::numeric_limits<std::int32_t>::max(), "rmsnorm: K must be in [1, 2^31), got " + std::to_string(k));
  require(batch >= 1 && batch <= 65535, "rmsnorm: batch must be in [1, 65535], got " + std::to_string(batch));
  require(x_address != 0 && g_address != 0 && out_address != 0, "rmsnorm: null device address");
  const std::size_t xs = dtype_bytes(dtype);
  require(x_address % xs == 0 && g_address % xs == 0 && out_address % xs == 0,
          "rmsnorm: addresses must be aligned to their element size");
  require(std::isfinite(eps) && eps >= 0.0f, "rmsnorm: eps must be finite and >= 0, got " + std::to_string(eps));
  const std::size_t out_bytes = static_cast<std::size_t>(batch) * static_cast<std::size_t>(k) * xs;
  require(!overlaps(out_address, out_bytes, x_address, out_bytes) &&
              !overlaps(out_address, out_bytes, g_address, static_cast<std::size_t>(k) * xs),
          "rmsnorm: out must not overlap x or g (each block re-reads x after the reduction)");
  // Enough threads for ~4 elements each, at least one warp, at most 1024.
  const std::int64_t want = ceil_div(k, 4);
  block_ = static_cast<int>(std::min<std::int64_t>(kRmsnormMaxThreads,
                                                   std::max<std::int64_t>(32, ceil_div(want, 32) * 32)));
}

void RmsnormOp::launch(cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(batch_));
  const dim3 block(static_cast<unsigned>(block_));
  switch (dtype_) {
    case DType::F16:
      rmsnorm_kernel<__half><<<grid, block, 0, stream>>>(static_cast<const __half*>(x_), static_cast<const __half*>(g_),
                                                         static_cast<__half*>(out_), k_, eps_);
      break;
    case DType::BF16:
      rmsnorm_kernel<__nv_bfloat16><<<grid, block, 0, stream>>>(static_cast<const __nv_bfloat16*>(x_),
                                                                static_cast<const __nv_bfloat16*>(g_),
                                                                static_cast<__nv_bfloat16*>(out_), k_, eps_);
      break;
    case DType::F32:
      rmsnorm_kernel<float><<<grid, block, 0, stream>>>(static_cast<const float*>(x_), static_cast<const float*>(g_),
                                                        static_cast<float*>(out_), k_, eps_);
      break;
  }
  EDGELLM_CUDA_CHECK_LAUNCH("rmsnorm");
}

std::size_t RmsnormOp::bytes_moved() const {
  const std::size_t xs = dtype_bytes(dtype_);
  return (2 * static_cast<std::size_t>(batch_) + 1) * static_cast<std::size_t>(k_) * xs;
}

// ----------------------------------------------------------------------------- RMSNorm, then GEMV
namespace {
// The workspace size, after the checks that make it meaningful (so that bad sizes raise ValueError, not a
// failed allocation).
std::size_t normed_workspace_bytes(std::int64_t k, int batch, DType dtype) {
  require(k >= 1 && k < std::numeric_limits<std::int32_t>::max(), "rmsnorm_then_gemv: K must be in [1, 2^31), got " +
                                                                   std::to_string(k));
  require(batch >= 1 && batch <= 8, "rmsnorm_then_gemv: batch must be in [1, 8], got " + std::to_string(batch));
  return static_cast<std::size_t>(batch) * static_cast<std::size_t>(k) * dtype_bytes(dtype);
}
}  // namespace

RmsnormThenGemvOp::RmsnormThenGemvOp(std::uintptr_t w_address, DType w_dtype, std::uintptr_t x_address, DType x_dtype,
                                     std::uintptr_t g_address, std::uintptr_t y_address, std::int64_t m,
                                     std::int64_t k, int batch, float eps, GemvVariant variant)
    : xn_(normed_workspace_bytes(k, batch, x_dtype)),
      norm_(x_address, x_dtype, g_address, xn_.address(), k, batch, eps),
      gemv_(w_address, w_dtype, xn_.address(), x_dtype, 0, y_address, m, k, batch, false, 0.0f, variant) {
  // The fused op's own alias rule: y is written while x and g may still be read (by the next launch's norm).
  const std::size_t xs = dtype_bytes(x_dtype);
  const std::size_t y_bytes = static_cast<std::size_t>(batch) * static_cast<std::size_t>(m) * xs;
  require(!overlaps(y_address, y_bytes, x_address, static_cast<std::size_t>(batch) * static_cast<std::size_t>(k) * xs) &&
              !overlaps(y_address, y_bytes, g_address, static_cast<std::size_t>(k) * xs),
          "rmsnorm_then_gemv: y must not overlap x or g");
}

void RmsnormThenGemvOp::launch(cudaStream_t stream) {
  norm_.launch(stream);
  gemv_.launch(stream);
}

}  // namespace edgellm::cuda
