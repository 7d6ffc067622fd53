// Ternary GEMV kernels (format and math: tmac_gemv.h).
//
// Variant "simple" (CUDA cores; the reference). Launch: 256 threads = 8 warps per block, one warp per row,
// ceil(M / 8) blocks, no shared memory. Lane l reads 16-byte chunks l, l+32, ... of its row (64 weights each),
// decodes each weight to a float in {-1, 0, +1} and does acc[b] = fmaf(w, x[b, k], acc[b]) for k < K (the
// product is exact; each add rounds in fp32). The 32 lane sums are combined by a shuffle tree (fp32), then
// y = scale * sum (one fp32 rounding), then converted to y's dtype (one more rounding for fp16 output).
// Cost: ~4 + batch instructions per weight per thread, so it is instruction-bound on large matrices.
//
// Variant "mma" (tensor cores). A warp owns T tiles of 16 rows (T = 1 except in the LM-head regime, below) and a
// slice of K; k advances in "steps" of 256
// weights = 64 packed bytes per row. Lane (g = lane / 4, t = lane % 4) loads, per step, 16 bytes of row g and
// 16 bytes of row g + 8 at byte 16 t of the step (so the four lanes of a group read 64 contiguous bytes of a
// row; the warp's load touches 16 rows x 64 bytes, whole 32-byte sectors). Those 2 x 64 weights feed 16
// mma.sync.m16n8k16 (A = weights as fp16/bf16, B = x with the batch as N = 8, C = fp32).
//   k order: an MMA may use any permutation of its 16 k slots as long as A and B agree. For MMA (p, i),
//   p in {0, 1}, i in 0..7, lane t's slots (2t, 2t+1) hold weights (32p + i, 32p + i + 8) of its 64 and slots
//   (2t+8, 2t+9) hold (32p + 16 + i, 32p + 24 + i): exactly the pair {bits 2i, bits 2i + 16} of one 32-bit
//   word of packed codes, which the decode below turns into one half2 without shuffling bits.
//   Decode (fp16): v = (word & (3 << 2i in each half)) | 0x6400 (1024.0) = 1024 + q * 4^i, exact, then
//   w = v * 4^-i - (1024 * 4^-i + 1) = q - 1 in one fma.rn.f16x2 (exact: every value involved is a small
//   integer or a power of two). Positions 5..7 use word >> 10 (positions 0..2 of it), since bits 10..15 of a half
//   are its exponent. bf16 is the same with 0x4300 (128.0), 7 mantissa bits: positions 0..2 of word, word >> 6
//   and word >> 12. So a 16-weight word costs 1 (fp16) or 2 (bf16) shifts + 8 LOP3 + 8 HFMA2 for 16 weights.
//   x (B operand): lane (g, t) holds batch row n = g; it loads x[n, k0 .. k0 + 63] of its step (L1/L2-resident;
//   16-byte loads when x rows are 16-byte aligned, else element loads) and pairs elements with PRMT (fp16).
//   fp16 x: one MMA per fragment; the fp16 inputs are used exactly.
//   fp32 x: x = h0 + h1 + h2 with h0 = x truncated to bf16 (the top 8 significant bits), h1 = (x - h0) truncated,
//   h2 = x - h0 - h1: each subtraction is exact and h2 has at most 8 significant bits, so the three bf16 terms
//   represent x EXACTLY (up to fp32 underflow below ~1e-38); three bf16 MMAs accumulate into the same C.
//   Rounding, therefore, happens only in: the tensor core's fp32 accumulation (products are exact; the sums are
//   fp32 but the hardware's alignment/rounding inside one MMA is not IEEE round-to-nearest; with T = 1 a warp
//   keeps two accumulator chains, the p = 0 and p = 1 halves of every step, added once at the end in fp32), the
//   fixed-order fp32 sum of the k_slices warp partials, y = scale * sum (fp32), and the fp16 conversion of y.
//   Tails: rows >= M and steps past the row end use zero codes (0x55) without loading; x elements k >= K and
//   batch rows n >= batch are zeros (never loaded), so padding codes and out-of-range x never matter.
//   Launch: tmac_mma_launch_shape(): k_slices = min(steps, 8) warps split K for a group of T 16-row tiles (warp s
//   takes steps s, s + k_slices, ...; with T = 1 the next step's weights are loaded before the current one is
//   computed; T = 2 or 4 only when every warp has one step and rows are plentiful, the LM-head regime), one
//   group per block, ceil(M / 16 T) blocks of 32 * k_slices threads; 4 T KB of static shared memory holds each
//   warp's C fragments, and after one barrier the block's threads add the k_slices partials in slice order and
//   write y (rows fastest, so stores coalesce).
//   Registers (ptxas -v, sm_90, CUDA 13.0; no spills, no stack): fp16 x: 78-80 (T = 1; 3 blocks of 8 warps per
//   SM), 90 (T = 2), 110 (T = 4); fp32 x: 123-126 (T = 1 only); "simple": 32. SASS (cuobjdump, fp16 x, T = 1):
//   one step is ~190 instructions around its 16 HMMA.16816.F32: 64 LOP3 + 64 HFMA2 (decode), 32 PRMT (x pairs),
//   10 LDG.E.128 (2 weights, 8 x), ~0.05 warp instructions per weight.
//   So for fp16 x, 14336 x 4096 is ~2.7M warp instructions (~2.6 us of issue on 132 SMs at 1.98 GHz) against
//   14.7 MB of weights (~3.5 us at 4.2 TB/s): bandwidth-bound, if loads stay in flight.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "tmac_gemv.h"

namespace edgellm::cuda {

// ------------------------------------------------------------------------------------------ names, weights
TmacVariant parse_tmac_variant(const std::string& name) {
  if (name == "simple") return TmacVariant::Simple;
  if (name == "mma") return TmacVariant::Mma;
  if (name == "stream") return TmacVariant::Stream;
  throw std::invalid_argument("variant: expected 'simple', 'mma' or 'stream', got '" + name + "'");
}

const char* tmac_variant_name(TmacVariant v) {
  return v == TmacVariant::Simple ? "simple" : (v == TmacVariant::Mma ? "mma" : "stream");
}

TmacDType parse_tmac_dtype(const std::string& name) {
  if (name == "float16") return TmacDType::F16;
  if (name == "float32") return TmacDType::F32;
  throw std::invalid_argument("dtype: expected 'float16' or 'float32', got '" + name + "'");
}

const char* tmac_dtype_name(TmacDType d) { return d == TmacDType::F16 ? "float16" : "float32"; }

namespace {

constexpr std::int64_t kMaxK = std::int64_t{1} << 30;  // keeps every k index (incl. step padding) in int32
constexpr std::int64_t kMaxM = (std::int64_t{1} << 31) - 16;

std::int64_t round_up(std::int64_t v, std::int64_t a) { return (v + a - 1) / a * a; }

std::size_t dtype_bytes(TmacDType d) { return d == TmacDType::F16 ? 2 : 4; }

}  // namespace

TernaryWeights::TernaryWeights(const std::uint8_t* packed, std::size_t packed_bytes, const float* scale,
                               std::size_t scale_count, std::int64_t m, std::int64_t k, cudaStream_t stream)
    : m_(m),
      k_(k),
      kp_(round_up(k, kTmacKAlign)),
      packed_(m >= 1 && m <= kMaxM && k >= 1 && k <= kMaxK ? static_cast<std::size_t>(m * (kp_ / 4)) : 0),
      scale_(m >= 1 && m <= kMaxM ? static_cast<std::size_t>(m) * sizeof(float) : 0) {
  if (m < 1 || m > kMaxM) throw std::invalid_argument("TernaryWeights: m must be in 1.." + std::to_string(kMaxM) + ", got " + std::to_string(m));
  if (k < 1 || k > kMaxK) throw std::invalid_argument("TernaryWeights: k must be in 1.." + std::to_string(kMaxK) + ", got " + std::to_string(k));
  const std::int64_t row_bytes = kp_ / 4;
  if (packed_bytes != static_cast<std::size_t>(m * row_bytes)) {
    throw std::invalid_argument("TernaryWeights: packed must be m * roundup(k, 64) / 4 = " + std::to_string(m) + " * " +
                                std::to_string(row_bytes) + " bytes, got " + std::to_string(packed_bytes));
  }
  if (scale_count != static_cast<std::size_t>(m)) {
    throw std::invalid_argument("TernaryWeights: scale must have m = " + std::to_string(m) + " elements, got " +
                                std::to_string(scale_count));
  }
  for (std::int64_t r = 0; r < m; ++r) {
    if (!std::isfinite(scale[r])) {
      throw std::invalid_argument("TernaryWeights: scale[" + std::to_string(r) + "] is not finite");
    }
  }
  // Codes: 3 is invalid everywhere; padding weights (k' >= k) must be code 1 (zero), as the format says.
  const std::int64_t first_pad_byte = k / 4;
  const int pad_in_first = static_cast<int>(k % 4);  // weights of byte first_pad_byte that are real
  for (std::int64_t r = 0; r < m; ++r) {
    const std::uint8_t* row = packed + r * row_bytes;
    for (std::int64_t j = 0; j < row_bytes; ++j) {
      const unsigned b = row[j];
      if ((b & (b >> 1) & 0x55u) != 0) {
        throw std::invalid_argument("TernaryWeights: packed row " + std::to_string(r) + " byte " + std::to_string(j) +
                                    " holds the invalid code 3");
      }
      if (j >= first_pad_byte) {
        const int first_pad = j == first_pad_byte ? pad_in_first : 0;
        for (int i = first_pad; i < 4; ++i) {
          if (((b >> (2 * i)) & 3u) != 1u) {
            throw std::invalid_argument("TernaryWeights: packed row " + std::to_string(r) + " weight " +
                                        std::to_string(4 * j + i) + " is padding (k = " + std::to_string(k) +
                                        ") and must have code 1 (zero)");
          }
        }
      }
    }
  }
  packed_.copy_from_host(packed, packed_bytes, 0, stream);
  scale_.copy_from_host(scale, scale_count * sizeof(float), 0, stream);
}

// ------------------------------------------------------------------------------------------------ kernels
namespace {

constexpr int kSimpleWarps = 8;
constexpr int kStepBytes = 64;         // packed bytes of one row per mma k-step
constexpr int kStepWeights = 256;      // weights per mma k-step
constexpr int kMaxKSlices = 8;         // warps splitting K for one 16-row tile
constexpr int kMaxMmaWarps = kMaxKSlices;  // per block (one 16-row tile); static shared memory is sized for this
constexpr std::uint32_t kZeroCodes = 0x55555555u;  // sixteen code-1 (zero) weights

__device__ __forceinline__ uint4 ldg16(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(float v) { return v; }

template <typename YT>
__device__ __forceinline__ YT from_f32(float v);
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}

// ------------------------------------------------------------------------------------------ simple
template <typename XT, typename YT>
__global__ void __launch_bounds__(kSimpleWarps * 32)
    tmac_simple_kernel(const std::uint8_t* __restrict__ packed, const float* __restrict__ scale,
                       const XT* __restrict__ x, YT* __restrict__ y, int M, int K, int row_bytes, int batch) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kSimpleWarps + (threadIdx.x >> 5);
  if (row >= M) return;  // the whole warp leaves together: the shuffles below see full warps
  const std::uint8_t* w_row = packed + static_cast<std::size_t>(row) * row_bytes;
  float acc[kTmacMaxBatch];
#pragma unroll
  for (int b = 0; b < kTmacMaxBatch; ++b) acc[b] = 0.0f;
  for (int c = lane; c * 16 < row_bytes; c += 32) {
    const uint4 v = ldg16(w_row + 16 * c);
#pragma unroll 1
    for (int j = 0; j < 4; ++j) {
      std::uint32_t word = j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
#pragma unroll
      for (int i = 0; i < 16; ++i, word >>= 2) {
        const int k = 64 * c + 16 * j + i;
        if (k < K) {
          const float w = static_cast<float>(word & 3u) - 1.0f;
#pragma unroll
          for (int b = 0; b < kTmacMaxBatch; ++b) {
            if (b < batch) acc[b] = fmaf(w, to_f32(x[static_cast<std::size_t>(b) * K + k]), acc[b]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int b = 0; b < kTmacMaxBatch; ++b) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[b] += __shfl_xor_sync(0xffffffffu, acc[b], off);
  }
  if (lane == 0) {
    const float s = scale[row];
#pragma unroll
    for (int b = 0; b < kTmacMaxBatch; ++b) {
      if (b < batch) y[static_cast<std::size_t>(b) * M + row] = from_f32<YT>(s * acc[b]);
    }
  }
}

// ------------------------------------------------------------------------------------------ mma helpers
// The tensor-core helpers exist for sm_80+ only (mma.m16n8k16, bf16 arithmetic); older targets compile a trap,
// and TmacGemvOp refuses "mma" on those devices (tmac_mma_supported), so it never runs.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define EDGELLM_TMAC_NO_MMA 1
#endif

__device__ __forceinline__ void mma_f16(float (&c)[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                        std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
#if defined(EDGELLM_TMAC_NO_MMA)
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                         std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
#if defined(EDGELLM_TMAC_NO_MMA)
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ std::uint32_t fma_f16x2(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__device__ __forceinline__ std::uint32_t fma_bf16x2(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d = 0;
#if defined(EDGELLM_TMAC_NO_MMA)
  __trap();
#else
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
#endif
  return d;
}

// (a & b) | c in one LOP3. Written out because the compiler splits (src & mask) | magic with two immediates into two
// LOP3s (an instruction holds one 32-bit immediate); here ptxas keeps the magic number in a register.
__device__ __forceinline__ std::uint32_t and_or(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

__host__ __device__ constexpr std::uint32_t dup16(std::uint32_t h) { return h | (h << 16); }

// Weights i and i + 8 of a 16-weight word (bits 2i and 2i + 16) as fp16 {low: w_i, high: w_{i+8}} in {-1, 0, 1}.
// w10 = w >> 10. Called with i a compile-time constant after unrolling, so masks and constants fold.
__device__ __forceinline__ std::uint32_t decode_pair_f16(int i, std::uint32_t w, std::uint32_t w10) {
  const int p = i < 5 ? i : i - 5;
  const std::uint32_t src = i < 5 ? w : w10;
  const std::uint32_t v = and_or(src, 0x00030003u << (2 * p), 0x64006400u);  // 1024 + q * 4^p
  const std::uint32_t scale = dup16((15u - 2u * p) << 10);                      // 4^-p
  const std::uint32_t bias = dup16(0x8000u | ((25u - 2u * p) << 10) | (1u << (2 * p)));  // -(1024 * 4^-p + 1)
  return fma_f16x2(v, scale, bias);
}

// The same for bf16 (7 mantissa bits): w6 = w >> 6, w12 = w >> 12.
__device__ __forceinline__ std::uint32_t decode_pair_bf16(int i, std::uint32_t w, std::uint32_t w6,
                                                          std::uint32_t w12) {
  const int p = i < 3 ? i : (i < 6 ? i - 3 : i - 6);
  const std::uint32_t src = i < 3 ? w : (i < 6 ? w6 : w12);
  const std::uint32_t v = and_or(src, 0x00030003u << (2 * p), 0x43004300u);  // 128 + q * 4^p
  const std::uint32_t scale = dup16((127u - 2u * p) << 7);                      // 4^-p
  const std::uint32_t bias = dup16(0x8000u | ((134u - 2u * p) << 7) | (1u << (2 * p)));  // -(128 * 4^-p + 1)
  return fma_bf16x2(v, scale, bias);
}

__device__ __forceinline__ std::uint32_t word_of(const uint4& v, int j) {
  return j == 0 ? v.x : (j == 1 ? v.y : (j == 2 ? v.z : v.w));
}

// 8 halves x[k .. k+7] of one batch row (zeros for k' >= K). kVec: the row is 16-byte aligned and K % 8 == 0, so
// a chunk is all in or all out.
template <bool kVec>
__device__ __forceinline__ uint4 load_x_chunk(const __half* row, int k, int K) {
  if (kVec) return k < K ? ldg16(row + k) : make_uint4(0, 0, 0, 0);
  const unsigned short* r = reinterpret_cast<const unsigned short*>(row);
  std::uint32_t h[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) h[e] = k + e < K ? __ldg(r + k + e) : 0u;
  return make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
}

// 4 floats x[k .. k+3] (as bits), zeros for k' >= K.
template <bool kVec>
__device__ __forceinline__ uint4 load_x_chunk(const float* row, int k, int K) {
  if (kVec) return k < K ? ldg16(row + k) : make_uint4(0, 0, 0, 0);
  const unsigned* r = reinterpret_cast<const unsigned*>(row);
  std::uint32_t f[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) f[e] = k + e < K ? __ldg(r + k + e) : 0u;
  return make_uint4(f[0], f[1], f[2], f[3]);
}

// Exact split of two floats into three bf16x2 terms (see the header comment): low halves from xa, high from xb.
__device__ __forceinline__ void split3_bf16(std::uint32_t ua, std::uint32_t ub, std::uint32_t& h0, std::uint32_t& h1,
                                            std::uint32_t& h2) {
  h0 = __byte_perm(ua, ub, 0x7632);  // top 16 bits of each: truncation to bf16
  const float ra = __uint_as_float(ua) - __uint_as_float(ua & 0xffff0000u);
  const float rb = __uint_as_float(ub) - __uint_as_float(ub & 0xffff0000u);
  const std::uint32_t va = __float_as_uint(ra), vb = __float_as_uint(rb);
  h1 = __byte_perm(va, vb, 0x7632);
  const float sa = ra - __uint_as_float(va & 0xffff0000u);
  const float sb = rb - __uint_as_float(vb & 0xffff0000u);
  h2 = __byte_perm(__float_as_uint(sa), __float_as_uint(sb), 0x7632);  // <= 8 significant bits: exact
}

// Accumulator chains per 16-row tile: with one tile per warp, the p = 0 and p = 1 halves of every step feed two
// independent MMA chains (a warp with one or two steps is then not serialised on the MMA latency); with several
// tiles per warp the tiles' chains are independent already, and one chain each saves registers.
template <int T>
constexpr int kChains = T == 1 ? 2 : 1;

// One 256-weight step of one warp over its T tiles: the lane's weights wa[tile] (row g of the tile) and wb[tile]
// (row g + 8), all at k0 = 256 s + 64 t. The B fragments (x) are built once and shared by the T tiles.
template <int T, bool kVecX>
__device__ __forceinline__ void mma_step(float (&c)[T][kChains<T>][4], const uint4 (&wa)[T], const uint4 (&wb)[T],
                                         const __half* xrow, bool has_x, int k0, int K) {
  uint4 xc[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) xc[q] = has_x ? load_x_chunk<kVecX>(xrow, k0 + 8 * q, K) : make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int p = 0; p < 2; ++p) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const std::uint32_t sel = (i & 1) ? 0x7632u : 0x5410u;
      const std::uint32_t b0 = __byte_perm(word_of(xc[4 * p], i / 2), word_of(xc[4 * p + 1], i / 2), sel);
      const std::uint32_t b1 = __byte_perm(word_of(xc[4 * p + 2], i / 2), word_of(xc[4 * p + 3], i / 2), sel);
#pragma unroll
      for (int tile = 0; tile < T; ++tile) {
        const std::uint32_t ga0 = word_of(wa[tile], 2 * p), ga1 = word_of(wa[tile], 2 * p + 1);
        const std::uint32_t gb0 = word_of(wb[tile], 2 * p), gb1 = word_of(wb[tile], 2 * p + 1);
        const std::uint32_t a0 = decode_pair_f16(i, ga0, ga0 >> 10);  // row g,     slots 2t, 2t+1
        const std::uint32_t a1 = decode_pair_f16(i, gb0, gb0 >> 10);  // row g + 8, slots 2t, 2t+1
        const std::uint32_t a2 = decode_pair_f16(i, ga1, ga1 >> 10);  // row g,     slots 2t+8, 2t+9
        const std::uint32_t a3 = decode_pair_f16(i, gb1, gb1 >> 10);  // row g + 8, slots 2t+8, 2t+9
        mma_f16(c[tile][p % kChains<T>], a0, a1, a2, a3, b0, b1);
      }
    }
  }
}

template <int T, bool kVecX>
__device__ __forceinline__ void mma_step(float (&c)[T][kChains<T>][4], const uint4 (&wa)[T], const uint4 (&wb)[T],
                                         const float* xrow, bool has_x, int k0, int K) {
  uint4 xc[16];
#pragma unroll
  for (int q = 0; q < 16; ++q) xc[q] = has_x ? load_x_chunk<kVecX>(xrow, k0 + 4 * q, K) : make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int p = 0; p < 2; ++p) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      // element e of the lane's 64 sits in chunk e / 4, component e % 4
      const int e0 = 32 * p + i, e1 = e0 + 8, e2 = e0 + 16, e3 = e0 + 24;
      std::uint32_t b0[3], b1[3];
      split3_bf16(word_of(xc[e0 / 4], e0 % 4), word_of(xc[e1 / 4], e1 % 4), b0[0], b0[1], b0[2]);
      split3_bf16(word_of(xc[e2 / 4], e2 % 4), word_of(xc[e3 / 4], e3 % 4), b1[0], b1[1], b1[2]);
#pragma unroll
      for (int tile = 0; tile < T; ++tile) {
        const std::uint32_t ga0 = word_of(wa[tile], 2 * p), ga1 = word_of(wa[tile], 2 * p + 1);
        const std::uint32_t gb0 = word_of(wb[tile], 2 * p), gb1 = word_of(wb[tile], 2 * p + 1);
        const std::uint32_t a0 = decode_pair_bf16(i, ga0, ga0 >> 6, ga0 >> 12);
        const std::uint32_t a1 = decode_pair_bf16(i, gb0, gb0 >> 6, gb0 >> 12);
        const std::uint32_t a2 = decode_pair_bf16(i, ga1, ga1 >> 6, ga1 >> 12);
        const std::uint32_t a3 = decode_pair_bf16(i, gb1, gb1 >> 6, gb1 >> 12);
#pragma unroll
        for (int term = 0; term < 3; ++term) mma_bf16(c[tile][p % kChains<T>], a0, a1, a2, a3, b0[term], b1[term]);
      }
    }
  }
}

// A block = k_slices warps over T tiles of 16 rows (16 T rows); warp `slice` takes steps slice, slice + k_slices, ...
// Register budget: 3 blocks of 8 warps per SM for fp16 x with T = 1 (<= 85 registers), else 2 (<= 128).
template <typename XT, typename YT, bool kVecX, int T>
__global__ void __launch_bounds__(kMaxMmaWarps * 32, (sizeof(XT) == 2 && T == 1) ? 3 : 2)
    tmac_mma_kernel(const std::uint8_t* __restrict__ packed, const float* __restrict__ scale, const XT* __restrict__ x,
                    YT* __restrict__ y, int M, int K, int row_bytes, int steps, int batch, int k_slices) {
  __shared__ float partial[kMaxMmaWarps * T][32][4];
  const int slice = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * (16 * T);
  const bool has_x = g < batch;
  const XT* xrow = x + static_cast<std::size_t>(has_x ? g : 0) * K;
  const uint4 zero_codes = make_uint4(kZeroCodes, kZeroCodes, kZeroCodes, kZeroCodes);

  // Loads the lane's 16 bytes of rows g and g + 8 of every tile for step s (zero codes past M or the row end).
  auto load_w = [&](int s, uint4 (&wa)[T], uint4 (&wb)[T]) {
    const bool in_row = s * kStepBytes + 16 * t < row_bytes;
    const std::size_t offset = static_cast<std::size_t>(s) * kStepBytes + 16 * t;
#pragma unroll
    for (int tile = 0; tile < T; ++tile) {
      const std::int64_t ra = row0 + 16 * tile + g, rb = ra + 8;
      wa[tile] = in_row && ra < M ? ldg16(packed + ra * row_bytes + offset) : zero_codes;
      wb[tile] = in_row && rb < M ? ldg16(packed + rb * row_bytes + offset) : zero_codes;
    }
  };

  float c[T][kChains<T>][4];
#pragma unroll
  for (int tile = 0; tile < T; ++tile)
#pragma unroll
    for (int ch = 0; ch < kChains<T>; ++ch)
#pragma unroll
      for (int j = 0; j < 4; ++j) c[tile][ch][j] = 0.0f;

  if constexpr (T == 1) {
    // The next step's weights are loaded before this step computes (two steps in flight per warp).
    uint4 next_a[1] = {zero_codes}, next_b[1] = {zero_codes};
    if (slice < steps) load_w(slice, next_a, next_b);
    for (int s = slice; s < steps; s += k_slices) {
      const uint4 wa[1] = {next_a[0]}, wb[1] = {next_b[0]};
      if (s + k_slices < steps) load_w(s + k_slices, next_a, next_b);
      mma_step<1, kVecX>(c, wa, wb, xrow, has_x, s * kStepWeights + 64 * t, K);
    }
  } else {
    // Chosen only when each warp has a single step (tmac_mma_launch_shape): the T tiles' loads are in flight together.
    for (int s = slice; s < steps; s += k_slices) {
      uint4 wa[T], wb[T];
      load_w(s, wa, wb);
      mma_step<T, kVecX>(c, wa, wb, xrow, has_x, s * kStepWeights + 64 * t, K);
    }
  }

#pragma unroll
  for (int tile = 0; tile < T; ++tile) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float v = c[tile][0][j];
#pragma unroll
      for (int ch = 1; ch < kChains<T>; ++ch) v += c[tile][ch][j];
      partial[slice * T + tile][lane][j] = v;
    }
  }
  __syncthreads();
  // C fragment: c[0], c[1] = (row g, cols 2t, 2t+1); c[2], c[3] = (row g + 8, cols 2t, 2t+1).
  for (int idx = threadIdx.x; idx < T * 128; idx += blockDim.x) {
    const int r = idx & 15, n = (idx >> 4) & 7, tile = idx >> 7;  // rows fastest: coalesced stores
    const std::int64_t row = row0 + 16 * tile + r;
    if (n >= batch || row >= M) continue;
    const int src_lane = (r & 7) * 4 + (n >> 1), comp = (r >> 3) * 2 + (n & 1);
    float sum = 0.0f;
    for (int ks = 0; ks < k_slices; ++ks) sum += partial[ks * T + tile][src_lane][comp];
    y[static_cast<std::size_t>(n) * M + row] = from_f32<YT>(scale[row] * sum);
  }
}


// ------------------------------------------------------------------------------------------ stream kernel
// Variant "stream" (fp16 x, tensor cores), in two forms chosen per launch (TmacLaunchShape::codes):
//   - weights form: the mma kernel's arithmetic (same decode, same MMAs, same k order, same two accumulator chains
//     and fixed-order sum of the K-slice partials, so the same rounding);
//   - codes form (nineteenth session): the A operand is the 2-bit code q = w + 1 itself, masked in place as an fp16
//     subnormal q * 4^c * 2^-24 (decode_pair_codes_f16: ONE LOP3 per weight pair instead of LOP3 + HFMA2; exact),
//     accumulated in four chains, one per scale class c; a tile's share is 2^24 (c0 + c1/4 + c2/16 + c3/64) minus
//     the sum of the x the warp multiplied (summed in fp32 while staging x: a warp stages exactly the steps it
//     multiplies), so W x = Q x - sum_k x_k. Products stay exact; the sums run over |q x| and |x| instead of |w x|
//     (error bound in tests/test_tmac_gpu.py), and a row of zero weights gives a rounding residue, not exact 0.
//     ncu on 14336 x 4096: 4.25 M warp instructions against 4.98 M. It wins where a warp has >= 2 items over the
//     launch (kStreamCodesMinItems) and costs ~0.1 us on one-item launches (its x sum and combine sit on their short
//     critical path): bench/results/experiments_nineteenth_session/README.md;
// with the work laid out for bandwidth instead of one short-lived block per tile:
//   - x is staged once per block in shared memory, already in B-fragment order (per lane and step, the 32 words
//     its 16 MMAs take, 8 x 16-byte LDS instead of 8 global loads + 32 PRMT + bounds checks per step); lane
//     blocks are 144 bytes apart (+16 bytes per batch row) so the lanes of a warp spread over the banks;
//   - a persistent grid (as many blocks as fit at once, from the occupancy API) loops over 16-row tiles; each
//     warp streams its items (one 256-weight step of one tile: 1 KB per warp) through a ring of kStreamDepth
//     register buffers, so kStreamDepth items stay in flight per warp across tile boundaries;
//   - per tile, k_slices warps take steps slice, slice + k_slices, ... (items_per_tile = ceil(steps / k_slices)
//     each; a warp's item past the last step loads and computes nothing), write their C fragments to shared
//     memory (double-buffered by tile parity: one barrier per tile) and the block adds them in slice order.
// Launch: tmac_stream_launch_shape(); dynamic shared memory = stream_x_bytes + stream_partial_bytes.
// Registers (ptxas, sm_90, CUDA 13.0): 80 (weights form) / 74 (codes form), no spills, with a ring of 3 items and
// 3 blocks of 8 warps per SM; 64 for both forms of the 16-warp instantiation (a ring of 4 takes 93 registers, 2
// blocks per SM; bounded at 3 blocks it spills). The warp counts (stream_wide_k_slices) were tuned on the weights
// form and re-checked under the codes form (nineteenth session, call 8; 17 and 18 steps in the twentieth, call 9).
// Not kept (twentieth session, bench/results/experiments_twentieth_session/): L2 prefetch of a block's coming
// tiles (slower everywhere), cache hints on the weight loads, one block per SM holding several K-slice groups so
// that every SM gets an even share of tiles (block IDs do not land on SMs round-robin; no faster).
// ncu on 14336 x 4096 with the
// ring of 4: 4.7 M warp instructions (the mma kernel: 6.5 M), issue slots 52% busy, DRAM 18%: still bound by
// instruction latency and issue (the decode is 128 of ~200 instructions per item), not by bandwidth.
// Seventeenth session (bench/results/experiments_seventeenth_session/): x read lazily in stream_item and the scales
// prefetched with the weights (this code, 80 registers) took 2-5% off every benchmark shape against the earlier
// form (14336 x 4096: 15.04 vs 15.70-15.84 us with events, 10.0 vs 10.3-10.4 in graphs). Not kept: bounded to 64
// registers for 4 blocks per SM (slower on 14336 x 4096 and the LM head; with 16 warps per block faster only where
// K >= 4864), and warp 0 alone reducing each tile behind named barriers (no faster, and racecheck flagged it).
constexpr int kStreamDepth = 3;            // items in flight per warp
constexpr int kStreamWarps = 8;            // warps per block of the default instantiation (3 blocks per SM)
constexpr int kStreamWideWarps = 16;       // warps per block of the wide one (2 blocks per SM, <= 64 registers)
constexpr int kMaxStreamSlices = kStreamWideWarps;
constexpr std::int64_t kStreamWideMinSteps = 17;  // 256-weight steps (K > 4096) from which the default is wide
constexpr std::int64_t kStreamCodesMinItems = 2;  // items per warp over the launch from which the codes form runs
constexpr int kXLaneBlockBytes = 144;      // one lane's 128 bytes of B fragments for one step, + 16 (bank spread)
constexpr std::int64_t kMaxStreamXBytes = 96 * 1024;  // staged x larger than this: "stream" refuses

__host__ __device__ constexpr std::int64_t stream_x_bytes(int batch, std::int64_t steps) {
  return batch * (steps * 4 * kXLaneBlockBytes + 16);
}
// Shared memory after the staged x: the K-slice partials of two tiles ([2][k_slices][32][4] floats), then each
// warp's sum of the x it multiplies, per batch row ([k_slices][kTmacMaxBatch] floats).
constexpr int stream_partial_bytes(int k_slices) {
  return (2 * k_slices * 32 * 4 + k_slices * kTmacMaxBatch) * static_cast<int>(sizeof(float));
}

// Byte offset of lane (batch row n, quad lane t)'s fragment block for step s.
__device__ __forceinline__ int x_block_offset(int n, int s, int t, int steps) {
  return ((n * steps + s) * 4 + t) * kXLaneBlockBytes + n * 16;
}

// Weights i and i + 8 of a 16-weight word (bits 2i and 2i + 16) as the fp16 pair {q_i, q_{i+8}} * 4^c * 2^-24
// with c = i % 4, q the 2-bit code (0, 1, 2), in ONE instruction: the code's two bits masked in place are the
// mantissa of an fp16 subnormal (exponent bits 0), so the value is exact and nothing turns q into w = q - 1.
// Positions 4..7 come from w8 = w >> 8 (their bits moved to positions 0..3). The "codes" form of the stream kernel
// multiplies these with x in four accumulator classes (one per c) and subtracts sum_k x_k: W x = Q x - sum_k x_k.
__device__ __forceinline__ std::uint32_t decode_pair_codes_f16(int i, std::uint32_t w, std::uint32_t w8) {
  return (i < 4 ? w : w8) & (0x00030003u << (2 * (i & 3)));
}

// Accumulator chains of the stream kernel's two forms: the weights form keeps the p = 0 and p = 1 halves of each
// step apart (as the mma kernel); the codes form one chain per code class c (decode_pair_codes_f16).
template <bool kCodes>
constexpr int kStreamChains = kCodes ? 4 : 2;

// One item: the lane's 16 bytes of rows g (wa) and g + 8 (wb) at step s against the staged x (xoff < 0: this
// lane's batch row does not exist, B = 0). MMA (p, i) = mi = 8p + i takes words 2 mi (b0) and 2 mi + 1 (b1): with
// the weights w = q - 1 (decode_pair_f16, the mma kernel's decode) into chain p, or with the codes
// (decode_pair_codes_f16) into chain i % 4.
// x is read from shared memory 16 bytes (two MMAs' B fragments) at a time as the MMAs need it, not all 128 bytes
// up front: that holds 4 registers instead of 32 (seventeenth session, form 1: 2-4% faster by itself).
template <bool kCodes>
__device__ __forceinline__ void stream_item(float (&c)[kStreamChains<kCodes>][4], const uint4& wa, const uint4& wb,
                                            const unsigned char* xs, int xoff) {
#pragma unroll
  for (int p = 0; p < 2; ++p) {
    const std::uint32_t ga0 = word_of(wa, 2 * p), ga1 = word_of(wa, 2 * p + 1);
    const std::uint32_t gb0 = word_of(wb, 2 * p), gb1 = word_of(wb, 2 * p + 1);
    uint4 xq = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int mi = 8 * p + i;
      if ((mi & 1) == 0 && xoff >= 0) xq = *reinterpret_cast<const uint4*>(xs + xoff + 8 * mi);
      const std::uint32_t b0 = word_of(xq, 2 * (mi & 1)), b1 = word_of(xq, 2 * (mi & 1) + 1);
      if constexpr (kCodes) {
        const std::uint32_t a0 = decode_pair_codes_f16(i, ga0, ga0 >> 8);
        const std::uint32_t a1 = decode_pair_codes_f16(i, gb0, gb0 >> 8);
        const std::uint32_t a2 = decode_pair_codes_f16(i, ga1, ga1 >> 8);
        const std::uint32_t a3 = decode_pair_codes_f16(i, gb1, gb1 >> 8);
        mma_f16(c[i & 3], a0, a1, a2, a3, b0, b1);
      } else {
        const std::uint32_t a0 = decode_pair_f16(i, ga0, ga0 >> 10);
        const std::uint32_t a1 = decode_pair_f16(i, gb0, gb0 >> 10);
        const std::uint32_t a2 = decode_pair_f16(i, ga1, ga1 >> 10);
        const std::uint32_t a3 = decode_pair_f16(i, gb1, gb1 >> 10);
        mma_f16(c[p], a0, a1, a2, a3, b0, b1);
      }
    }
  }
}

// A lane's share of W x for C-fragment element e from its chains. Weights form: c0 + c1. Codes form: Q x =
// 2^24 (c0 + c1 / 4 + c2 / 16 + c3 / 64) by Horner from the class with the largest scale (the scalings by powers
// of two are exact; each of the three adds rounds once), minus the sum of the x this warp multiplied (x_sum).
template <bool kCodes>
__device__ __forceinline__ float stream_share(const float (&c)[kStreamChains<kCodes>][4], int e, float x_sum) {
  if constexpr (kCodes) {
    return fmaf(16777216.0f, fmaf(fmaf(fmaf(c[3][e], 0.25f, c[2][e]), 0.25f, c[1][e]), 0.25f, c[0][e]), -x_sum);
  } else {
    return c[0][e] + c[1][e];
  }
}

// WARPS: the most warps (K slices) a block of this instantiation has: kStreamWarps (80 registers, 3 blocks per
// SM) or kStreamWideWarps (bounded to 64 registers, 2 blocks per SM). kCodes: the codes form (above). Both chosen
// by tmac_stream_launch_shape.
template <typename YT, int WARPS, bool kCodes>
__global__ void __launch_bounds__(WARPS * 32, WARPS > kStreamWarps ? 2 : 3)
    tmac_stream_kernel(const std::uint8_t* __restrict__ packed, const float* __restrict__ scale,
                       const __half* __restrict__ x, YT* __restrict__ y, int M, int K, int row_bytes, int steps,
                       int batch, int k_slices, int items_per_tile, int x_vec) {
  extern __shared__ uint4 smem[];
  unsigned char* xs = reinterpret_cast<unsigned char*>(smem);
  float* partial = reinterpret_cast<float*>(xs + stream_x_bytes(batch, steps));  // [2][k_slices][32][4]
  const int tiles = (M + 15) / 16;
  const int slice = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const uint4 zero_codes = make_uint4(kZeroCodes, kZeroCodes, kZeroCodes, kZeroCodes);
  float* x_sum_warp = partial + 2 * k_slices * 128 + slice * kTmacMaxBatch;  // this warp's [kTmacMaxBatch]

  // The load position runs kStreamDepth items ahead of the compute position, over this block's tiles. With a
  // tile's last item it also loads the scale that this thread applies in the tile's reduction (row tile * 16 +
  // threadIdx.x % 16: blockDim.x is a multiple of 16, so every idx a thread reduces has that row): loaded there
  // rather than after the tile's barrier, its DRAM latency no longer sits in front of the block's next barrier.
  int ld_tile = blockIdx.x, ld_u = 0;
  auto load_next = [&](uint4& a, uint4& b, float& tile_scale) {
    a = zero_codes;
    b = zero_codes;
    if (ld_tile >= tiles) return;
    if (ld_u == items_per_tile - 1) {
      const int row = ld_tile * 16 + (threadIdx.x & 15);
      tile_scale = threadIdx.x < 16 * batch && row < M ? __ldg(scale + row) : 0.0f;
    }
    const int s = ld_u * k_slices + slice;
    const int byte = s * kStepBytes + 16 * t;
    if (s < steps && byte < row_bytes) {
      const int ra = ld_tile * 16 + g;
      if (ra < M) a = ldg16(packed + static_cast<std::size_t>(ra) * row_bytes + byte);
      if (ra + 8 < M) b = ldg16(packed + static_cast<std::size_t>(ra + 8) * row_bytes + byte);
    }
    if (++ld_u == items_per_tile) {
      ld_u = 0;
      ld_tile += gridDim.x;
    }
  };
  uint4 wa[kStreamDepth], wb[kStreamDepth];
  float sc[kStreamDepth] = {};  // slot r: the scale of the tile whose last item is in slot r (set when it is loaded)
#pragma unroll
  for (int r = 0; r < kStreamDepth; ++r) load_next(wa[r], wb[r], sc[r]);

  // Stage x (the weight loads above are in flight meanwhile): 16-byte chunk k8 = elements 8 k8 .. 8 k8 + 7 of row
  // n; element e of it is x[k0 + 32p + 8j + e] of step s, quad lane t (k0 = 256 s + 64 t), which is half (j & 1)
  // of word 2 (8p + e) + (j >> 1): byte 64p + 2j + 8e of the lane block. Elements k >= K are zeros.
  // Warp w stages the chunks of steps w, w + k_slices, ... (k8 >> 5 = slice + j k_slices), exactly the steps it
  // multiplies in every tile; so in the codes form it also sums the x it stages (fp32, fixed order: per lane, then
  // a shuffle tree) and subtracts that from each tile's share: its part of W x = Q x - sum_k x_k (the sums kept in
  // shared memory, not registers: the 16-warp instantiation has none to spare).
  const int chunks_per_row = steps * 32;
  if (kCodes && lane >= batch && lane < kTmacMaxBatch) x_sum_warp[lane] = 0.0f;  // batch rows that do not exist
  for (int n = 0; n < batch; ++n) {
    const unsigned short* row = reinterpret_cast<const unsigned short*>(x + static_cast<std::size_t>(n) * K);
    float x_sum = 0.0f;
    for (int k8 = threadIdx.x; k8 < chunks_per_row; k8 += blockDim.x) {
      const int k = 8 * k8;
      unsigned short h[8];
      if (x_vec && k + 8 <= K) {
        const uint4 v = ldg16(row + k);
        const std::uint32_t wv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 8; ++e) h[e] = static_cast<unsigned short>(wv[e >> 1] >> (16 * (e & 1)));
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) h[e] = k + e < K ? __ldg(row + k + e) : static_cast<unsigned short>(0);
      }
      const int s = k8 >> 5, tq = (k8 >> 3) & 3, p = (k8 >> 2) & 1, j = k8 & 3;
      unsigned char* dst = xs + x_block_offset(n, s, tq, steps) + 64 * p + 2 * j;
#pragma unroll
      for (int e = 0; e < 8; ++e) *reinterpret_cast<unsigned short*>(dst + 8 * e) = h[e];
      if constexpr (kCodes) {
        float chunk_sum = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) chunk_sum += __half2float(__ushort_as_half(h[e]));
        x_sum += chunk_sum;
      }
    }
    if constexpr (kCodes) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) x_sum += __shfl_xor_sync(0xffffffffu, x_sum, off);
      if (lane == 0) x_sum_warp[n] = x_sum;
    }
  }
  __syncthreads();

  constexpr int kChains = kStreamChains<kCodes>;
  float c[kChains][4];
#pragma unroll
  for (int q = 0; q < kChains; ++q) c[q][0] = c[q][1] = c[q][2] = c[q][3] = 0.0f;
  int tile = blockIdx.x, u = 0, parity = 0;
  while (tile < tiles) {
#pragma unroll
    for (int r = 0; r < kStreamDepth; ++r) {
      if (tile < tiles) {  // block-uniform: every warp of the block walks the same (tile, u) sequence
        const int s = u * k_slices + slice;
        if (s < steps) stream_item<kCodes>(c, wa[r], wb[r], xs, g < batch ? x_block_offset(g, s, t, steps) : -1);
        const float tile_scale = sc[r];
        load_next(wa[r], wb[r], sc[r]);
        if (++u == items_per_tile) {
          float* mine = partial + ((parity * k_slices + slice) * 32 + lane) * 4;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            mine[e] = stream_share<kCodes>(c, e, kCodes ? x_sum_warp[2 * t + (e & 1)] : 0.0f);
#pragma unroll
            for (int q = 0; q < kChains; ++q) c[q][e] = 0.0f;
          }
          __syncthreads();
          // C fragment: e = 0, 1: (row g, cols 2t, 2t+1); e = 2, 3: (row g + 8, cols 2t, 2t+1). Rows fastest.
          for (int idx = threadIdx.x; idx < 128; idx += blockDim.x) {
            const int rr = idx & 15, n = idx >> 4;
            const int row = tile * 16 + rr;
            if (n >= batch || row >= M) continue;
            const int src = ((rr & 7) * 4 + (n >> 1)) * 4 + (rr >> 3) * 2 + (n & 1);
            float sum = 0.0f;
            for (int ks = 0; ks < k_slices; ++ks) sum += partial[(parity * k_slices + ks) * 128 + src];
            y[static_cast<std::size_t>(n) * M + row] = from_f32<YT>(tile_scale * sum);
          }
          parity ^= 1;
          u = 0;
          tile += gridDim.x;
        }
      }
    }
  }
}

// The stream instantiation for a launch shape's k_slices warps per block and form (all have the same signature).
template <typename YT>
auto stream_kernel(int k_slices, bool codes) {
  if (k_slices > kStreamWarps) {
    return codes ? &tmac_stream_kernel<YT, kStreamWideWarps, true> : &tmac_stream_kernel<YT, kStreamWideWarps, false>;
  }
  return codes ? &tmac_stream_kernel<YT, kStreamWarps, true> : &tmac_stream_kernel<YT, kStreamWarps, false>;
}

}  // namespace

// ------------------------------------------------------------------------------------------ launch shapes
namespace {

// Items per tile on the busiest warp scheduler when k warps split a row of `steps` steps: warp w takes steps w,
// w + k, ... and issues from the SM sub-partition w % 4.
std::int64_t busiest_scheduler_items(std::int64_t steps, std::int64_t k) {
  std::int64_t load[4] = {0, 0, 0, 0};
  for (std::int64_t w = 0; w < k && w < steps; ++w) load[w % 4] += (steps - w + k - 1) / k;
  return std::max(std::max(load[0], load[1]), std::max(load[2], load[3]));
}

// The wide instantiation's warps for a row of steps >= kStreamWideMinSteps: among the warp counts (9..16) that
// give each warp as few items per tile as 16 warps would, the one whose busiest scheduler has the fewest items,
// then the fewest warps. Measured on the H200 (tools/sweep_tmac.py, every cap 8..16 on the models' down
// projections, 19 to 74 steps; bench/results/nvidia-h200/tmac_stream_sweep.md): the best cap or within 1% of it
// in CUDA graphs on all 7, with events too except at 56 steps (16 warps, 2.5% slower than 14); at 17 and 18 steps
// (five shapes, twentieth session) the best in graphs on all, with events except 14336 x 4352 (8 warps 4% faster).
std::int64_t stream_wide_k_slices(std::int64_t steps) {
  const std::int64_t fewest_items = (steps + kStreamWideWarps - 1) / kStreamWideWarps;
  std::int64_t best = kStreamWideWarps, best_load = -1;
  for (std::int64_t k = kStreamWarps + 1; k <= kStreamWideWarps; ++k) {  // ascending: the fewest warps win ties
    if ((steps + k - 1) / k != fewest_items) continue;
    const std::int64_t load = busiest_scheduler_items(steps, k);
    if (best_load < 0 || load < best_load) {
      best = k;
      best_load = load;
    }
  }
  return best;
}

}  // namespace

TmacLaunchShape tmac_simple_launch_shape(std::int64_t m) {
  TmacLaunchShape s;
  s.threads = kSimpleWarps * 32;
  s.blocks = static_cast<int>((m + kSimpleWarps - 1) / kSimpleWarps);
  s.k_slices = 1;
  s.rows_per_block = kSimpleWarps;
  return s;
}

// The mma grid (the one place it is tuned). Up to kMaxKSlices warps split K for a group of T 16-row tiles; one
// group per block, ceil(M / 16 T) blocks of 32 k_slices threads.
// - k_slices = min(steps, 8): small-K shapes (SmolLM2's K = 576 is 3 steps) give every warp one step, all of
//   its loads issued at once (latency-bound regime); large K gives 8 warps x steps/8 steps with the next step's
//   loads in flight while one computes (bandwidth-bound regime: 3 blocks x 8 warps x 2 KB ~ 48 KB per SM).
// - T (tiles per warp): 1, except when each warp has a single step (steps <= 8) and there are so many tiles
//   that even with T = 2 or 4 every SM still gets >= 4 blocks (kBlocksPerSmForTiling): then a warp loads T
//   tiles' weights at once (T KB in flight instead of 1) and shares its x fragments among them; this is the
//   LM-head regime (49152 x 576: T = 4, 768 blocks). Only for fp16 x with 16-byte x loads (allow_tiling; the
//   fp32-x kernel would spill registers with T > 1).
TmacLaunchShape tmac_mma_launch_shape(std::int64_t m, std::int64_t k, int sm_count, bool allow_tiling,
                                      int max_k_slices) {
  constexpr std::int64_t kBlocksPerSmForTiling = 4;
  if (max_k_slices < 0 || max_k_slices > kMaxKSlices) {
    throw std::invalid_argument("max_k_slices: expected 0 (auto) or 1.." + std::to_string(kMaxKSlices) + ", got " +
                                std::to_string(max_k_slices));
  }
  const std::int64_t slice_cap = max_k_slices > 0 ? max_k_slices : kMaxKSlices;
  const std::int64_t row_bytes = round_up(k, kTmacKAlign) / 4;
  const std::int64_t steps = (row_bytes + kStepBytes - 1) / kStepBytes;
  const std::int64_t tiles = (m + 15) / 16;
  TmacLaunchShape s;
  s.k_slices = static_cast<int>(steps < slice_cap ? steps : slice_cap);
  s.tiles_per_warp = 1;
  if (allow_tiling && steps <= slice_cap) {
    for (int t : {4, 2}) {
      if ((tiles + t - 1) / t >= kBlocksPerSmForTiling * sm_count) {
        s.tiles_per_warp = t;
        break;
      }
    }
  }
  s.threads = 32 * s.k_slices;
  s.rows_per_block = 16 * s.tiles_per_warp;
  s.blocks = static_cast<int>((m + s.rows_per_block - 1) / s.rows_per_block);
  return s;
}

// The stream grid (the one place it is tuned): k_slices = min(steps, cap) warps per block, as many blocks as fit
// on the device at once (blocks_per_sm from the occupancy API for this shared-memory size), never more than there
// are tiles. The default cap is 8 (kStreamWarps) up to kStreamWideMinSteps - 1 steps of K; from there on the
// wide instantiation with stream_wide_k_slices(steps) warps: a long row then has fewer items per warp in front of
// its tile's barrier, which beats the 8-warp form's extra registers and resident blocks only on such rows (at 16
// steps 8 warps of 2 items were faster than 16 of 1 in CUDA graphs: 4.50 vs 4.60 us on 4096 x 4096).
TmacLaunchShape tmac_stream_launch_shape(std::int64_t m, std::int64_t k, int batch, int sm_count, int blocks_per_sm,
                                         int max_k_slices) {
  if (max_k_slices < 0 || max_k_slices > kMaxStreamSlices) {
    throw std::invalid_argument("max_k_slices: expected 0 (auto) or 1.." + std::to_string(kMaxStreamSlices) +
                                ", got " + std::to_string(max_k_slices));
  }
  const std::int64_t steps = (round_up(k, kTmacKAlign) / 4 + kStepBytes - 1) / kStepBytes;
  const std::int64_t slice_cap =
      max_k_slices > 0 ? max_k_slices : (steps >= kStreamWideMinSteps ? stream_wide_k_slices(steps) : kStreamWarps);
  const std::int64_t tiles = (m + 15) / 16;
  TmacLaunchShape s;
  s.k_slices = static_cast<int>(steps < slice_cap ? steps : slice_cap);
  s.items_per_tile = static_cast<int>((steps + s.k_slices - 1) / s.k_slices);
  s.threads = 32 * s.k_slices;
  s.rows_per_block = 16;
  const std::int64_t resident = static_cast<std::int64_t>(sm_count) * (blocks_per_sm > 0 ? blocks_per_sm : 1);
  s.blocks = static_cast<int>(tiles < resident ? tiles : resident);
  s.smem_bytes = static_cast<int>(stream_x_bytes(batch, steps) + stream_partial_bytes(s.k_slices));
  const std::int64_t items_per_warp = (tiles + s.blocks - 1) / s.blocks * s.items_per_tile;
  s.codes = items_per_warp >= kStreamCodesMinItems;
  return s;
}

bool tmac_stream_fits(std::int64_t k, int batch) {
  const std::int64_t steps = (round_up(k, kTmacKAlign) / 4 + kStepBytes - 1) / kStepBytes;
  return k >= 1 && k <= kMaxK && batch >= 1 && batch <= kTmacMaxBatch && stream_x_bytes(batch, steps) <= kMaxStreamXBytes;
}

// ------------------------------------------------------------------------------------------ the op
bool tmac_mma_supported() {
  int device = 0, major = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

TmacGemvOp::TmacGemvOp(std::shared_ptr<const TernaryWeights> weights, std::uintptr_t x, std::uintptr_t y, int batch,
                       TmacDType x_dtype, TmacDType y_dtype, TmacVariant variant, int max_k_slices)
    : w_(std::move(weights)), x_(x), y_(y), batch_(batch), x_dtype_(x_dtype), y_dtype_(y_dtype), variant_(variant) {
  if (!w_) throw std::invalid_argument("TmacGemvOp: weights is None");
  if (batch < 1 || batch > kTmacMaxBatch) {
    throw std::invalid_argument("TmacGemvOp: batch must be in 1..8, got " + std::to_string(batch));
  }
  if (x == 0) throw std::invalid_argument("TmacGemvOp: x is a null device address");
  if (y == 0) throw std::invalid_argument("TmacGemvOp: out is a null device address");
  if (x_dtype == TmacDType::F32 && y_dtype == TmacDType::F16) {
    throw std::invalid_argument("TmacGemvOp: float32 x gives a float32 output (float16 output is for float16 x)");
  }
  if (x % dtype_bytes(x_dtype) != 0 || y % dtype_bytes(y_dtype) != 0) {
    throw std::invalid_argument("TmacGemvOp: x and out must be aligned to their element size");
  }
  x_vector_loads_ = x % 16 == 0 && (static_cast<std::size_t>(w_->k()) * dtype_bytes(x_dtype)) % 16 == 0;
  if (variant == TmacVariant::Simple) {
    shape_ = tmac_simple_launch_shape(w_->m());
  } else if (variant == TmacVariant::Stream) {
    if (x_dtype != TmacDType::F16) {
      throw std::invalid_argument("TmacGemvOp: variant 'stream' takes float16 x (use 'mma' for float32 x)");
    }
    if (!tmac_stream_fits(w_->k(), batch)) {
      throw std::invalid_argument("TmacGemvOp: variant 'stream' stages x in shared memory: batch " +
                                  std::to_string(batch) + " x k " + std::to_string(w_->k()) +
                                  " needs more than " + std::to_string(kMaxStreamXBytes) + " bytes; use 'mma'");
    }
    if (!tmac_mma_supported()) {
      throw std::invalid_argument("TmacGemvOp: variant 'stream' needs compute capability 8.0 or newer; use 'simple'");
    }
    int device = 0, sm_count = 0, blocks_per_sm = 0;
    EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
    EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    const auto kernel_of = [y_dtype](const TmacLaunchShape& s) {
      return y_dtype == TmacDType::F16 ? reinterpret_cast<const void*>(stream_kernel<__half>(s.k_slices, s.codes))
                                       : reinterpret_cast<const void*>(stream_kernel<float>(s.k_slices, s.codes));
    };
    // Above 48 KB of dynamic shared memory a kernel must opt in (a per-function attribute, idempotent).
    const auto allow_smem = [](const void* kernel, int bytes) {
      EDGELLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    };
    // First pass: block size and shared memory (independent of the grid), which the occupancy query needs. Both
    // forms of an instantiation have the same launch bounds and shared memory, so the same occupancy.
    shape_ = tmac_stream_launch_shape(w_->m(), w_->k(), batch, sm_count, 1, max_k_slices);
    allow_smem(kernel_of(shape_), shape_.smem_bytes);
    EDGELLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel_of(shape_), shape_.threads,
                                                                     shape_.smem_bytes));
    if (blocks_per_sm < 1) {
      throw std::invalid_argument("TmacGemvOp: variant 'stream' does not fit this device (shared memory " +
                                  std::to_string(shape_.smem_bytes) + " bytes per block); use 'mma'");
    }
    shape_ = tmac_stream_launch_shape(w_->m(), w_->k(), batch, sm_count, blocks_per_sm, max_k_slices);
    allow_smem(kernel_of(shape_), shape_.smem_bytes);  // the form depends on the grid: it may not be the first's
  } else {
    if (!tmac_mma_supported()) {
      throw std::invalid_argument(
          "TmacGemvOp: variant 'mma' needs compute capability 8.0 or newer (mma.sync m16n8k16, bf16); use 'simple'");
    }
    int device = 0, sm_count = 0;
    EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
    EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
    shape_ = tmac_mma_launch_shape(w_->m(), w_->k(), sm_count, x_vector_loads_ && x_dtype == TmacDType::F16,
                                   max_k_slices);
  }
}

std::size_t TmacGemvOp::bytes_per_launch() const {
  const auto b = static_cast<std::size_t>(batch_);
  return w_->packed_bytes() + w_->scale_bytes() + b * static_cast<std::size_t>(w_->k()) * dtype_bytes(x_dtype_) +
         b * static_cast<std::size_t>(w_->m()) * dtype_bytes(y_dtype_);
}

namespace {

template <typename XT, typename YT>
void launch_typed(const TernaryWeights& w, std::uintptr_t x, std::uintptr_t y, int batch, TmacVariant variant,
                  bool x_vec, const TmacLaunchShape& s, cudaStream_t stream) {
  const auto* xp = reinterpret_cast<const XT*>(x);
  auto* yp = reinterpret_cast<YT*>(y);
  const int M = static_cast<int>(w.m()), K = static_cast<int>(w.k()), row_bytes = static_cast<int>(w.row_bytes());
  if (variant == TmacVariant::Simple) {
    tmac_simple_kernel<XT, YT><<<s.blocks, s.threads, 0, stream>>>(w.packed(), w.scale(), xp, yp, M, K, row_bytes, batch);
    EDGELLM_CUDA_CHECK_LAUNCH("tmac_simple_kernel");
    return;
  }
  const int steps = (row_bytes + kStepBytes - 1) / kStepBytes;
  if (variant == TmacVariant::Stream) {
    if constexpr (std::is_same_v<XT, __half>) {
      stream_kernel<YT>(s.k_slices, s.codes)<<<s.blocks, s.threads, s.smem_bytes, stream>>>(
          w.packed(), w.scale(), xp, yp, M, K, row_bytes, steps, batch, s.k_slices, s.items_per_tile, x_vec ? 1 : 0);
      EDGELLM_CUDA_CHECK_LAUNCH("tmac_stream_kernel");
    }
    return;  // float32 x never reaches here (the constructor refuses it)
  }
  const auto args = std::make_tuple(w.packed(), w.scale(), xp, yp, M, K, row_bytes, steps, batch, s.k_slices);
  auto check_launch = []() { EDGELLM_CUDA_CHECK_LAUNCH("tmac_mma_kernel"); };
  auto run = [&](auto kernel) {
    std::apply([&](auto... a) { kernel<<<s.blocks, s.threads, 0, stream>>>(a...); }, args);
  };
  if (!x_vec) {
    run(tmac_mma_kernel<XT, YT, false, 1>);  // element loads of x: unaligned x or K not a multiple of 16 bytes
    return check_launch();
  }
  if constexpr (std::is_same_v<XT, __half>) {
    if (s.tiles_per_warp == 4) {
      run(tmac_mma_kernel<XT, YT, true, 4>);
      return check_launch();
    }
    if (s.tiles_per_warp == 2) {
      run(tmac_mma_kernel<XT, YT, true, 2>);
      return check_launch();
    }
  }
  run(tmac_mma_kernel<XT, YT, true, 1>);
  EDGELLM_CUDA_CHECK_LAUNCH("tmac_mma_kernel");
}

}  // namespace

void TmacGemvOp::launch(cudaStream_t stream) {
  if (x_dtype_ == TmacDType::F16 && y_dtype_ == TmacDType::F16) {
    launch_typed<__half, __half>(*w_, x_, y_, batch_, variant_, x_vector_loads_, shape_, stream);
  } else if (x_dtype_ == TmacDType::F16) {
    launch_typed<__half, float>(*w_, x_, y_, batch_, variant_, x_vector_loads_, shape_, stream);
  } else {
    launch_typed<float, float>(*w_, x_, y_, batch_, variant_, x_vector_loads_, shape_, stream);
  }
}

}  // namespace edgellm::cuda
