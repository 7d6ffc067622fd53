// Streaming GEMV, fused RMSNorm + GEMV, and a standalone RMSNorm for decode (batch 1..8), as prepared ops.
//
// Math (fp32 accumulation throughout; outputs rounded once to the activation dtype):
//   GemvOp, norm off:   y[b, m] = sum_k W[m, k] * x[b, k]
//   GemvOp, norm on:    y[b, m] = inv_rms[b] * sum_k W[m, k] * (g[k] * x[b, k]),
//                       inv_rms[b] = 1 / sqrt(sum_k x[b, k]^2 / K + eps)
//                       (= W . (rmsnorm(x) * g); the normalised activation is never stored anywhere)
//   RmsnormOp:          out[b, k] = x[b, k] * inv_rms[b] * g[k]
// Layout: W [M, K] row-major, fp16 or bf16; x [B, K] row-major, fp16, bf16 or fp32; g [K] of x's dtype;
// y [B, M] row-major of x's dtype. All C-contiguous device memory owned by the caller (the ops keep addresses).
// Limits: 1 <= B <= 8, 1 <= K < 2^31, 1 <= M < 2^31, M * K < 2^62. No shared buffer depends on K or M.
//
// Kernel variants (one kernel launch per GemvOp launch; gemv_kernels.cuh has the launch shapes):
//   "warp"   each warp owns R rows (R = 2 at batch 1, 4 at batch 2..8) and the whole of K: 16-byte weight
//            loads, 8 in flight per lane, each x chunk read once for the R rows; warp-shuffle reduction. For
//            many rows (M large) or small K.
//   "block"  each block of 8 warps owns R rows and splits K across its 256 threads; warp-shuffle then a
//            shared-memory reduction (8 x 40 floats at most, fixed). For few rows with long K (all SMs busy).
//   "shared" batch 1, K <= 8192: as "warp" (2 rows per warp), but each block of 8 warps converts x (and g,
//            sum x^2) once into shared memory (K * 4 bytes) while its first weight loads are in flight; the
//            warps read x from there. For many rows with short K, where "warp" spends as many instructions on
//            x as on the weights.
//   "scalar" each warp owns 1 row, element-wise loads: any K and any alignment (K % 8 != 0, or addresses not
//            16-byte aligned). Slow; also an independent check of the vector variants in the tests.
//   "auto"   chooses by shape: see choose_gemv_variant() in fused_rmsnorm_gemv.cu (the one crossover table).
// The fused norm costs no extra pass: every thread already reads the x chunks it multiplies, so it also
// accumulates x^2 from the same registers, and the warp (or block) reduces sum x^2 with its dot products;
// inv_rms is applied once at the end. Each row group thus re-reads x (B*K*sizeof(x) bytes, L1/L2-resident).
#pragma once

#include <cstdint>
#include <string>

#include "device_buffer.h"
#include "launchable.h"

namespace edgellm::cuda {

enum class DType { F16, BF16, F32 };
enum class GemvVariant { Auto, Warp, Block, Scalar, Shared };
// "shared": the longest K (x staged as fp32 in K * 4 bytes of dynamic shared memory; 8192: 32 KB, under the 48 KB a
// launch may use without opting in).
constexpr std::int64_t kGemvSharedMaxK = 8192;

// "float16" | "bfloat16" | "float32"; throws std::invalid_argument otherwise.
DType parse_dtype(const std::string& name);
std::size_t dtype_bytes(DType dtype);
// "auto" | "warp" | "block" | "scalar" | "shared"; throws std::invalid_argument otherwise.
GemvVariant parse_gemv_variant(const std::string& name);
const char* gemv_variant_name(GemvVariant variant);

// The crossover table (measured on an H200; see fused_rmsnorm_gemv.cu): the variant "auto" picks for an aligned
// problem of M rows, K columns and batch B on a device with `sm_count` multiprocessors: "block", "warp" or (batch
// 1) "shared"; never "scalar".
GemvVariant choose_gemv_variant(std::int64_t m, std::int64_t k, int batch, int sm_count);

class GemvOp : public Launchable {
 public:
  // g_address is used only when `norm` (then it must be non-zero); eps only when `norm` (finite, >= 0).
  // Throws std::invalid_argument for bad shapes/dtypes/eps, a null address, or a forced vector variant on
  // unaligned data (K % 8 != 0 or an address not 16-byte aligned), or "shared" forced with batch > 1 or
  // K > 8192. "auto" falls back to "scalar" on unaligned data.
  GemvOp(std::uintptr_t w_address, DType w_dtype, std::uintptr_t x_address, DType x_dtype, std::uintptr_t g_address,
         std::uintptr_t y_address, std::int64_t m, std::int64_t k, int batch, bool norm, float eps,
         GemvVariant variant);

  void launch(cudaStream_t stream) override;

  GemvVariant variant() const { return variant_; }
  // Compulsory device-memory traffic of one launch: W + x + g (when norm) + y, each once.
  std::size_t bytes_moved() const;
  // On-chip re-reads of the activations (x, and g when norm) by every row group ("shared": by every block):
  // the cost of each warp or block recomputing sum x^2 itself instead of a second launch (served by L1/L2,
  // not DRAM).
  std::size_t activation_reads_bytes() const;
  int grid_blocks() const { return grid_; }
  int block_threads() const { return block_; }

 private:
  const void* w_;
  const void* x_;
  const void* g_;
  void* y_;
  DType w_dtype_, x_dtype_;
  std::int64_t m_, k_;
  int batch_;
  bool norm_;
  float eps_;
  GemvVariant variant_;
  int grid_ = 0, block_ = 0;
};

class RmsnormOp : public Launchable {
 public:
  // out[b, :] = x[b, :] * inv_rms[b] * g; one block per row. out may not overlap x.
  RmsnormOp(std::uintptr_t x_address, DType dtype, std::uintptr_t g_address, std::uintptr_t out_address,
            std::int64_t k, int batch, float eps);
  void launch(cudaStream_t stream) override;
  std::size_t bytes_moved() const;  // x + g + out
  int block_threads() const { return block_; }

 private:
  const void* x_;
  const void* g_;
  void* out_;
  DType dtype_;
  std::int64_t k_;
  int batch_;
  float eps_;
  int block_ = 0;
};

// The two-launch baseline the fused op replaces, as one prepared op for the timers: RmsnormOp writes
// xn = rmsnorm(x) * g (x's dtype) to a workspace owned by this op (allocated here, B * K * sizeof(x) bytes),
// then a GemvOp (norm off) computes y = W . xn. Same arguments and checks as GemvOp with norm on.
class RmsnormThenGemvOp : public Launchable {
 public:
  RmsnormThenGemvOp(std::uintptr_t w_address, DType w_dtype, std::uintptr_t x_address, DType x_dtype,
                    std::uintptr_t g_address, std::uintptr_t y_address, std::int64_t m, std::int64_t k, int batch,
                    float eps, GemvVariant variant);
  void launch(cudaStream_t stream) override;
  int kernels_per_launch() const override { return 2; }
  GemvVariant variant() const { return gemv_.variant(); }
  std::size_t bytes_moved() const { return norm_.bytes_moved() + gemv_.bytes_moved(); }

 private:
  DeviceBuffer xn_;  // first member: built before the ops that point into it
  RmsnormOp norm_;
  GemvOp gemv_;
};

}  // namespace edgellm::cuda
