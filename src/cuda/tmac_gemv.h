// Ternary (BitNet b1.58) GEMV on the GPU, with the weights resident in device memory.
//
// Math: y[b, m] = scale[m] * sum_{k < K} W[m, k] * x[b, k] for b < batch (1..8), W[m, k] in {-1, 0, +1}.
//
// Weight format (the project's one ternary packing, shared with the CPU kernels; numpy reference packer:
// edgellm_ext.formats.pack_ternary): 2-bit code q = w + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid); each row is
// zero-padded (code 1) from K to Kp = roundup(K, 64) weights, so a packed row is Kp/4 bytes (a multiple of 16);
// packed uint8 [M, Kp/4], rows contiguous; byte j of a row holds weights 4j..4j+3, weight 4j+i in bits 2i..2i+1.
// scale: float32 [M], finite.
//
// Activations x: [batch, K] row-major, fp16 or fp32 (K elements per row, not Kp). Output y: [batch, M] row-major,
// x's dtype, or fp32 for fp16 x on request. Accumulation is fp32 everywhere; where rounding happens is stated
// per variant in tmac_gemv.cu. No atomics: partial sums are warp-private and combined by shuffles (simple) or
// through shared memory in a fixed order (mma), so results are deterministic run to run.
//
// Variants (see tmac_gemv.cu for launch shapes): "simple" (CUDA cores, one warp per row: the reference), "mma"
// (tensor cores, mma.sync m16n8k16 with the batch as N, one block per 16-row tile) and "stream" (float16 x staged
// in shared memory and a persistent grid streaming the weights; x must fit: tmac_stream_fits; the mma kernel's
// arithmetic, or on launches with >= 2 items per warp the "codes" form: Q x - sum x with Q = W + 1, exact products,
// fp32 sums). The Python layer picks one for "auto".
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <cuda_runtime.h>

#include "device_buffer.h"
#include "launchable.h"

namespace edgellm::cuda {

enum class TmacVariant { Simple, Mma, Stream };
enum class TmacDType { F16, F32 };

// "simple" | "mma" | "stream" (std::invalid_argument otherwise; "auto" is resolved by the caller).
TmacVariant parse_tmac_variant(const std::string& name);
const char* tmac_variant_name(TmacVariant v);
// "float16" | "float32" (std::invalid_argument otherwise).
TmacDType parse_tmac_dtype(const std::string& name);
const char* tmac_dtype_name(TmacDType d);

constexpr int kTmacMaxBatch = 8;
constexpr std::int64_t kTmacKAlign = 64;  // K is padded to a multiple of this many weights

// Packed ternary weights and per-row scales in device memory (owned; freed with the object). Any number of
// instances may coexist (no global state).
class TernaryWeights {
 public:
  // Copies from host memory, validating first (std::invalid_argument): m >= 1, k >= 1, packed_bytes ==
  // m * roundup(k, 64) / 4, scale_count == m, every scale finite, no code 3 anywhere, every padding weight
  // (k' >= k) code 1. The copies are ordered on `stream` and complete before the constructor returns.
  TernaryWeights(const std::uint8_t* packed, std::size_t packed_bytes, const float* scale, std::size_t scale_count,
                 std::int64_t m, std::int64_t k, cudaStream_t stream);

  std::int64_t m() const { return m_; }
  std::int64_t k() const { return k_; }
  std::int64_t kp() const { return kp_; }
  std::int64_t row_bytes() const { return kp_ / 4; }
  std::size_t packed_bytes() const { return packed_.bytes(); }
  std::size_t scale_bytes() const { return scale_.bytes(); }
  const std::uint8_t* packed() const { return static_cast<const std::uint8_t*>(packed_.data()); }
  const float* scale() const { return static_cast<const float*>(scale_.data()); }

 private:
  std::int64_t m_, k_, kp_;
  DeviceBuffer packed_;
  DeviceBuffer scale_;
};

// Grid of one launch (for benchmarks and the report): blocks x threads, and for "mma" how many warps split K
// for one 16-row tile.
struct TmacLaunchShape {
  int blocks = 0;
  int threads = 0;
  int k_slices = 1;        // mma: warps splitting K, each taking every k_slices-th 256-weight step
  int tiles_per_warp = 1;  // mma: 16-row tiles each warp computes (sharing its x fragments)
  int rows_per_block = 0;
  int items_per_tile = 1;  // stream: 256-weight steps each warp takes per tile
  int smem_bytes = 0;      // stream: dynamic shared memory per block (staged x + partial sums)
  bool codes = false;      // stream: the codes form (multiplies the 2-bit codes, subtracts sum x; tmac_gemv.cu)
};

// The prepared op: y = tmac(W, x) with device addresses, batch, dtypes and variant fixed at construction
// (validated there: std::invalid_argument). launch() only enqueues one kernel (graph-capturable). The caller
// keeps x and y alive; the op keeps the weights alive.
class TmacGemvOp : public Launchable {
 public:
  TmacGemvOp(std::shared_ptr<const TernaryWeights> weights, std::uintptr_t x, std::uintptr_t y, int batch,
             TmacDType x_dtype, TmacDType y_dtype, TmacVariant variant, int max_k_slices = 0);
  void launch(cudaStream_t stream) override;

  TmacVariant variant() const { return variant_; }
  const TmacLaunchShape& launch_shape() const { return shape_; }
  // Bytes one launch must move through device memory at least: packed weights + scales + x + y.
  std::size_t bytes_per_launch() const;

 private:
  std::shared_ptr<const TernaryWeights> w_;
  std::uintptr_t x_, y_;
  int batch_;
  TmacDType x_dtype_, y_dtype_;
  TmacVariant variant_;
  bool x_vector_loads_ = false;  // x rows 16-byte aligned: mma loads x 16 bytes at a time
  TmacLaunchShape shape_;
};

// Whether the current device can run "mma" (compute capability >= 8.0; the op refuses it otherwise).
bool tmac_mma_supported();

// The mma variant's grid for a shape on a device with sm_count SMs (the one place its tuning lives).
// allow_tiling: fp16 x read with 16-byte loads (the only case with a multi-tile kernel).
// max_k_slices caps the warps splitting K (0: the tuned default: 8 for "mma"; for "stream" 8, or 9..16 from 17
// steps of K on, see tmac_stream_launch_shape; at most 8 for "mma", 16 for "stream"); the benchmark sweeps it.
TmacLaunchShape tmac_mma_launch_shape(std::int64_t m, std::int64_t k, int sm_count, bool allow_tiling,
                                      int max_k_slices = 0);
TmacLaunchShape tmac_simple_launch_shape(std::int64_t m);
// The stream variant's grid; blocks_per_sm: how many of its blocks fit an SM at once (occupancy API).
TmacLaunchShape tmac_stream_launch_shape(std::int64_t m, std::int64_t k, int batch, int sm_count, int blocks_per_sm,
                                         int max_k_slices = 0);
// Whether "stream" can stage a batch x k activation block in shared memory (its only size limit).
bool tmac_stream_fits(std::int64_t k, int batch);

}  // namespace edgellm::cuda
