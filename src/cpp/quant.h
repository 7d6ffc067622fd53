// GGUF/ggml block quantization on the CPU: Q4_0, Q4_1, Q8_0 (layouts defined in docs/formats.md, which cites
// ggml's block_q4_0 / block_q4_1 / block_q8_0; the structs below are byte-for-byte the same).
//
// A block holds 32 consecutive weights of one row:
//   Q4_0 (18 bytes): f16 d, 16 bytes qs;       w[j] = d * (nib[j] - 8)
//   Q4_1 (20 bytes): f16 d, f16 m, 16 bytes qs; w[j] = d * nib[j] + m
//   Q8_0 (34 bytes): f16 d, 32 int8 qs;        w[j] = d * qs[j]
// where for the 4-bit types byte j of qs holds element j in its low nibble and element j + 16 in its high nibble.
// A matrix W [rows, cols] is stored row after row, each row cols/32 blocks (cols must be a multiple of 32).
//
// quantize() reproduces the rounding of the `gguf` Python package's gguf.quants (which the tests compare
// against bit for bit); dequantize() is exact (each weight is one f16 -> f32 conversion and one rounding, and
// for Q4_0/Q4_1/Q8_0 that rounding is exact or identical in every path), so all paths agree bit for bit.
//
// Matrix-vector products y = W x (y: [rows] f32):
//   quant_matvec_f32: x f32 [cols]; each row is the float32 dot product of the dequantized weights with x
//                     (scalar: one accumulator in order; SIMD: several lanes, a different summation order).
//   quant_matvec_q8_0: x is first quantized to Q8_0 blocks (as ggml does for its vec_dot_q4_0_q8_0 etc.);
//                     per block the integer dot product is exact, then scaled by d_w * d_x in float32.
//                     For Q4_1: y += d_w d_x sum(nib q_x) + m_w s_x with s_x = d_x sum(q_x) computed once per
//                     activation block in float32 (ggml uses Q8_1 activations whose stored s is rounded to f16;
//                     that rounding is the only difference from ggml's vec_dot_q4_1_q8_1).
// Rows are split across n_threads std::threads (n_threads <= 1 runs on the calling thread). The kernels do not
// inspect scales: a NaN/Inf scale makes its row's output NaN/Inf (always: Inf * anything is Inf or NaN and
// neither leaves a sum). check_quant_scales() names the bad row and block; edgellm_ext.quant runs it before
// dequantize and, for matvec, only when an output came out non-finite (a scan reads every cache line of W).
#pragma once

#include <cstddef>
#include <cstdint>

#include "simd/simd.h"

namespace edgellm::cpu {

// Values are ggml's GGMLQuantizationType ids.
enum class QuantType : int { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };

constexpr std::size_t kQuantBlockElems = 32;

struct BlockQ4_0 {
  std::uint16_t d;  // f16 bits
  std::uint8_t qs[16];
};
struct BlockQ4_1 {
  std::uint16_t d;  // f16 bits
  std::uint16_t m;  // f16 bits
  std::uint8_t qs[16];
};
struct BlockQ8_0 {
  std::uint16_t d;  // f16 bits
  std::int8_t qs[32];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes in ggml");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes in ggml");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes in ggml");

// Throws std::invalid_argument for an id that is not Q4_0/Q4_1/Q8_0.
QuantType quant_type_from_id(int ggml_type_id);
const char* quant_type_name(QuantType type);
std::size_t quant_block_bytes(QuantType type);

// IEEE half <-> float, round to nearest even (the conversions numpy's astype(float16) and F16C perform).
float fp16_to_fp32(std::uint16_t h);
std::uint16_t fp32_to_fp16(float f);

// x: [n_rows, blocks_per_row * 32] f32 -> blocks. Throws std::invalid_argument naming the row and block when an
// input is NaN/Inf or a block's scale (or Q4_1 min) overflows f16. Scalar only: quantizing is done once per
// weight (and once per activation vector, O(cols)), never in the inner loop.
void quantize(QuantType type, const float* x, std::uint8_t* blocks, std::size_t n_rows, std::size_t blocks_per_row);

// blocks -> y: [n_blocks * 32] f32.
void dequantize(QuantType type, const std::uint8_t* blocks, float* y, std::size_t n_blocks, SimdPath path);

// Throws std::invalid_argument naming the first row and block whose d (or Q4_1 m) is NaN or Inf.
void check_quant_scales(QuantType type, const std::uint8_t* blocks, std::size_t n_rows, std::size_t blocks_per_row);

// y[r] = sum_c W[r, c] x[c]; w: rows * (cols/32) blocks, x: [cols] f32. Throws std::invalid_argument when cols is
// not a multiple of 32.
void quant_matvec_f32(QuantType type, const std::uint8_t* w, const float* x, float* y, std::size_t rows,
                      std::size_t cols, SimdPath path, int n_threads);

// As quant_matvec_f32 but x is quantized to Q8_0 first (see above); throws like quantize() when x is not finite.
void quant_matvec_q8_0(QuantType type, const std::uint8_t* w, const float* x, float* y, std::size_t rows,
                       std::size_t cols, SimdPath path, int n_threads);

// The same with x already quantized: xq is cols/32 Q8_0 blocks whose qs lie in [-127, 127] (as quantize()
// makes them; -128 could overflow the AVX2 path's 16-bit pair sums).
void quant_matvec_q8_0_prequantized(QuantType type, const std::uint8_t* w, const std::uint8_t* xq, float* y,
                                    std::size_t rows, std::size_t cols, SimdPath path, int n_threads);

}  // namespace edgellm::cpu
