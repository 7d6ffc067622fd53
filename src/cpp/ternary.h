// Ternary (BitNet b1.58) matrix-vector product on the CPU, T-MAC style.
//
// Math: y[r] = scale[r] * sum_k W[r, k] x[k], W in {-1, 0, +1}.
// Layout (docs/formats.md; shared with the CUDA kernel, numpy reference edgellm_ext.formats.pack_ternary):
//   2-bit code q = w + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 invalid); K padded with code 1 to Kp = next multiple of
//   64; packed uint8 [M, Kp/4], rows contiguous; byte j holds weights 4j..4j+3, weight 4j+i in bits 2i..2i+1.
//   So nibble 0 of byte j is q(4j) + 4 q(4j+1) and nibble 1 is q(4j+2) + 4 q(4j+3).
// Methods:
//   Decode   f32 baseline: decode each code to -1/0/+1 and FMA with x (scalar, AVX2, NEON).
//   LutF32   one 16-entry float table per pair of activations, t[q0 + 4 q1] = (q0-1) x0 + (q1-1) x1, indexed
//            directly by the nibbles (bitnet.cpp's TL1 with g = 2); float accumulation per row in index order.
//            Scalar only (every path runs the scalar code): a 16-entry f32 gather does not map onto pshufb/tbl.
//   LutInt8  the same tables quantized to int8 with one scale per block of 32 activations (16 tables):
//            s_b = max over the block's pairs of (|x0| + |x1|) / 127, entry = round(t / s_b) (half away from 0).
//            Lookups (AVX2 _mm256_shuffle_epi8, NEON vqtbl1q_s8, 16 rows at a time after an in-register byte
//            transpose of the row-major weights) are summed exactly in integers per block; the block sums are
//            scaled and accumulated in double, in block order, so every path gives the same bits.
//            Error: each lookup is off by at most s_b/2 (plus float rounding of t, < 2^-16 s_b); see
//            tests/test_ternary.py for the bound that is tested.
// Code 3 never occurs in a packed matrix (the packer cannot make it; edgellm_ext.ternary rejects it before
// calling in). Here it is memory-safe but meaningless: table entries for code 3 are 0, Decode treats it as +2.
// Rows are split across n_threads std::threads (granule 16 rows).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "simd/simd.h"

namespace edgellm::cpu {

constexpr std::size_t kTernaryKAlign = 64;
constexpr std::size_t kTernaryLutBlock = 32;  // activations per int8 table scale

enum class TernaryMethod { Decode, LutF32, LutInt8 };

// "decode" | "lut" | "lut_int8"; throws std::invalid_argument otherwise.
TernaryMethod parse_ternary_method(const char* name);

// Kp for k (k >= 1).
std::size_t ternary_padded_k(std::size_t k);

// Tables for one activation vector x[k] (built once, reused by every row and by several matrices that share x).
struct TernaryLutF32 {
  std::size_t kp = 0;
  std::vector<float> table;  // [kp/2][16]
};
struct TernaryLutInt8 {
  std::size_t kp = 0;
  std::vector<std::int8_t> table;  // [kp/2][16]
  std::vector<double> block_scale;  // [kp/32], s_b (a float32 value, kept as double for the accumulation)
};
TernaryLutF32 build_ternary_lut_f32(const float* x, std::size_t k);
TernaryLutInt8 build_ternary_lut_int8(const float* x, std::size_t k);

// packed: [m, kp/4]; scale: [m]; x: [k]; y: [m].
void ternary_matvec(const std::uint8_t* packed, const float* scale, const float* x, float* y, std::size_t m,
                    std::size_t k, TernaryMethod method, SimdPath path, int n_threads);

// The same with prebuilt tables (method LutF32 / LutInt8).
void ternary_matvec_lut_f32(const std::uint8_t* packed, const float* scale, const TernaryLutF32& lut, float* y,
                            std::size_t m, int n_threads);
void ternary_matvec_lut_int8(const std::uint8_t* packed, const float* scale, const TernaryLutInt8& lut, float* y,
                             std::size_t m, SimdPath path, int n_threads);

}  // namespace edgellm::cpu
