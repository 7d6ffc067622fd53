// NEON path of ternary.h (baseline ARMv8-A).
//   Decode: per packed byte, the byte broadcast to 4 lanes and shifted right by 0, 2, 4, 6 (vshlq_u32 with
//           negative counts), masked, minus 1, converted and FMA'd with x; 4 accumulators.
//   LutInt8: as the AVX2 path: 16 rows x 8 bytes transposed in registers (rows i and i + 8 share a q register,
//           then an 8x8 byte transpose with vtrn), vqtbl1q_s8 lookups for pairs 2j and 2j+1, exact int16 row
//           sums per block, double accumulation in block order (same bits as scalar).
#include <arm_neon.h>

#include "ternary.h"
#include "ternary_impl.h"

namespace edgellm::cpu::neon {

void ternary_decode_rows(const std::uint8_t* packed, const float* scale, const float* x, float* y, std::size_t kp,
                         std::size_t row_begin, std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  const int32x4_t shifts = {0, -2, -4, -6};
  const uint32x4_t three = vdupq_n_u32(3);
  const int32x4_t one = vdupq_n_s32(1);
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const std::uint8_t* p = packed + r * row_bytes;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (std::size_t j = 0; j < row_bytes; j += 4) {
      for (int g = 0; g < 4; ++g) {
        const uint32x4_t codes = vandq_u32(vshlq_u32(vdupq_n_u32(p[j + g]), shifts), three);
        const int32x4_t w = vsubq_s32(vreinterpretq_s32_u32(codes), one);
        acc[g] = vfmaq_f32(acc[g], vcvtq_f32_s32(w), vld1q_f32(x + 4 * (j + g)));
      }
    }
    y[r] = scale[r] * vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
  }
}

namespace {

// rows[i] = (8 bytes of row i) | (8 bytes of row i + 8) for i < 8; out[j] = byte j of rows 0..15 in row order.
inline void transpose_16x8(const uint8x16_t rows[8], uint8x16_t out[8]) {
  uint8x16_t t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = vtrn1q_u8(rows[2 * i], rows[2 * i + 1]);
    t[2 * i + 1] = vtrn2q_u8(rows[2 * i], rows[2 * i + 1]);
  }
  uint16x8_t u[8];
  for (int i = 0; i < 2; ++i) {
    const uint16x8_t a0 = vreinterpretq_u16_u8(t[4 * i]), a1 = vreinterpretq_u16_u8(t[4 * i + 1]);
    const uint16x8_t a2 = vreinterpretq_u16_u8(t[4 * i + 2]), a3 = vreinterpretq_u16_u8(t[4 * i + 3]);
    u[4 * i + 0] = vtrn1q_u16(a0, a2);
    u[4 * i + 2] = vtrn2q_u16(a0, a2);
    u[4 * i + 1] = vtrn1q_u16(a1, a3);
    u[4 * i + 3] = vtrn2q_u16(a1, a3);
  }
  for (int i = 0; i < 4; ++i) {
    const uint32x4_t a = vreinterpretq_u32_u16(u[i]), b = vreinterpretq_u32_u16(u[4 + i]);
    out[i] = vreinterpretq_u8_u32(vtrn1q_u32(a, b));
    out[4 + i] = vreinterpretq_u8_u32(vtrn2q_u32(a, b));
  }
}

}  // namespace

void ternary_lut_int8_rows(const std::uint8_t* packed, const float* scale, const std::int8_t* table,
                           const double* block_scale, float* y, std::size_t kp, std::size_t row_begin,
                           std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  const uint8x16_t low_mask = vdupq_n_u8(0x0F);
  std::size_t r0 = row_begin;
  for (; r0 + 16 <= row_end; r0 += 16) {
    const std::uint8_t* p = packed + r0 * row_bytes;
    float64x2_t acc[8];
    for (float64x2_t& a : acc) a = vdupq_n_f64(0.0);
    for (std::size_t b = 0; b < kp / 32; ++b) {
      uint8x16_t rows[8], col[8];
      for (int i = 0; i < 8; ++i) {
        rows[i] = vcombine_u8(vld1_u8(p + i * row_bytes + 8 * b), vld1_u8(p + (i + 8) * row_bytes + 8 * b));
      }
      transpose_16x8(rows, col);
      int16x8_t sum_lo = vdupq_n_s16(0), sum_hi = vdupq_n_s16(0);  // rows 0..7, rows 8..15
      for (int j = 0; j < 8; ++j) {
        const std::int8_t* t = table + 32 * (8 * b + j);
        const int8x16_t v0 = vqtbl1q_s8(vld1q_s8(t), vandq_u8(col[j], low_mask));
        const int8x16_t v1 = vqtbl1q_s8(vld1q_s8(t + 16), vshrq_n_u8(col[j], 4));
        sum_lo = vaddq_s16(sum_lo, vaddl_s8(vget_low_s8(v0), vget_low_s8(v1)));
        sum_hi = vaddq_s16(sum_hi, vaddl_high_s8(v0, v1));
      }
      const float64x2_t s = vdupq_n_f64(block_scale[b]);
      const int32x4_t q[4] = {vmovl_s16(vget_low_s16(sum_lo)), vmovl_high_s16(sum_lo), vmovl_s16(vget_low_s16(sum_hi)),
                              vmovl_high_s16(sum_hi)};
      for (int g = 0; g < 4; ++g) {
        acc[2 * g] = vfmaq_f64(acc[2 * g], vcvtq_f64_s64(vmovl_s32(vget_low_s32(q[g]))), s);
        acc[2 * g + 1] = vfmaq_f64(acc[2 * g + 1], vcvtq_f64_s64(vmovl_high_s32(q[g])), s);
      }
    }
    for (int g = 0; g < 8; ++g) {
      const float64x2_t sc = vcvt_f64_f32(vld1_f32(scale + r0 + 2 * g));
      vst1_f32(y + r0 + 2 * g, vcvt_f32_f64(vmulq_f64(acc[g], sc)));
    }
  }
  for (std::size_t r = r0; r < row_end; ++r) {
    y[r] = scalar::ternary_lut_int8_row(packed + r * row_bytes, scale[r], table, block_scale, kp);
  }
}

}  // namespace edgellm::cpu::neon
