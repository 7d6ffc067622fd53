// NEON path of quant.h (baseline ARMv8-A: no dotprod extension assumed). f32 activations: each block is
// expanded to 8 x 4 float weights (exactly the dequantized values) and FMA'd into 4 accumulators. Q8_0
// activations: widening int8 multiplies (vmull_s8) summed exactly into int32, then scaled by d_w * d_x.
#include <arm_neon.h>

#include <cstring>

#include "quant.h"
#include "quant_impl.h"
#include "simd/neon.h"

namespace edgellm::cpu::neon {
namespace {

using edgellm::neon::hsum;

float half(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// 8 bytes -> two float32x4 (elements 0..3 and 4..7).
inline void u8x8_to_f32(uint8x8_t v, float32x4_t& a, float32x4_t& b) {
  const uint16x8_t w = vmovl_u8(v);
  a = vcvtq_f32_u32(vmovl_u16(vget_low_u16(w)));
  b = vcvtq_f32_u32(vmovl_u16(vget_high_u16(w)));
}
inline void s8x8_to_f32(int8x8_t v, float32x4_t& a, float32x4_t& b) {
  const int16x8_t w = vmovl_s8(v);
  a = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
  b = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
}

// w[4k..4k+3] for a 4-bit block. Q4_1: d * nib + m, where d * nib is exact (11-bit d, 4-bit nib) so the FMA
// rounds exactly like the scalar d * nib + m. Q4_0: d * (nib - 8), computed as the scalar path (and gguf) do so
// that even the sign of a zero matches.
template <bool kOffset8>
inline void dequant4(const std::uint8_t* qs, float d, float m, float32x4_t out[8]) {
  const uint8x16_t q = vld1q_u8(qs);
  const uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0F));
  const uint8x16_t hi = vshrq_n_u8(q, 4);
  const float32x4_t vm = vdupq_n_f32(m);
  float32x4_t f[8];
  u8x8_to_f32(vget_low_u8(lo), f[0], f[1]);
  u8x8_to_f32(vget_high_u8(lo), f[2], f[3]);
  u8x8_to_f32(vget_low_u8(hi), f[4], f[5]);
  u8x8_to_f32(vget_high_u8(hi), f[6], f[7]);
  for (int k = 0; k < 8; ++k) {
    out[k] = kOffset8 ? vmulq_n_f32(vsubq_f32(f[k], vdupq_n_f32(8.0f)), d) : vfmaq_n_f32(vm, f[k], d);
  }
}

inline void dequant_block_q4_0(const std::uint8_t* b, float32x4_t out[8]) { dequant4<true>(b + 2, half(b), 0.0f, out); }
inline void dequant_block_q4_1(const std::uint8_t* b, float32x4_t out[8]) {
  dequant4<false>(b + 4, half(b), half(b + 2), out);
}
inline void dequant_block_q8_0(const std::uint8_t* b, float32x4_t out[8]) {
  const float d = half(b);
  const int8x16_t lo = vld1q_s8(reinterpret_cast<const std::int8_t*>(b + 2));
  const int8x16_t hi = vld1q_s8(reinterpret_cast<const std::int8_t*>(b + 18));
  float32x4_t f[8];
  s8x8_to_f32(vget_low_s8(lo), f[0], f[1]);
  s8x8_to_f32(vget_high_s8(lo), f[2], f[3]);
  s8x8_to_f32(vget_low_s8(hi), f[4], f[5]);
  s8x8_to_f32(vget_high_s8(hi), f[6], f[7]);
  for (int k = 0; k < 8; ++k) out[k] = vmulq_n_f32(f[k], d);
}

template <void (*Dequant)(const std::uint8_t*, float32x4_t*), std::size_t kBlockBytes>
void dequantize_rows(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  float32x4_t w[8];
  for (std::size_t i = 0; i < n_blocks; ++i, y += 32) {
    Dequant(blocks + i * kBlockBytes, w);
    for (int k = 0; k < 8; ++k) vst1q_f32(y + 4 * k, w[k]);
  }
}

template <void (*Dequant)(const std::uint8_t*, float32x4_t*), std::size_t kBlockBytes>
float dot_f32(const std::uint8_t* wb, const float* x, std::size_t n_blocks) {
  float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  float32x4_t w[8];
  for (std::size_t i = 0; i < n_blocks; ++i, x += 32) {
    Dequant(wb + i * kBlockBytes, w);
    for (int k = 0; k < 8; ++k) acc[k & 3] = vfmaq_f32(acc[k & 3], w[k], vld1q_f32(x + 4 * k));
  }
  return hsum(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

// Exact sum of a[i] * b[i] over 32 int8 pairs given as two 16-byte halves each.
inline int32x4_t dot_i8(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
  int16x8_t p0 = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
  int16x8_t p1 = vmull_s8(vget_high_s8(a0), vget_high_s8(b0));
  int16x8_t p2 = vmull_s8(vget_low_s8(a1), vget_low_s8(b1));
  int16x8_t p3 = vmull_s8(vget_high_s8(a1), vget_high_s8(b1));
  // each product fits int16 (|a| <= 128, |b| <= 127); widen before adding
  return vaddq_s32(vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)), vaddq_s32(vpaddlq_s16(p2), vpaddlq_s16(p3)));
}

inline int8x16_t load_s8(const std::uint8_t* p) { return vld1q_s8(reinterpret_cast<const std::int8_t*>(p)); }

}  // namespace

void dequantize_q4_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  dequantize_rows<dequant_block_q4_0, sizeof(BlockQ4_0)>(blocks, y, n_blocks);
}
void dequantize_q4_1(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  dequantize_rows<dequant_block_q4_1, sizeof(BlockQ4_1)>(blocks, y, n_blocks);
}
void dequantize_q8_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  dequantize_rows<dequant_block_q8_0, sizeof(BlockQ8_0)>(blocks, y, n_blocks);
}

float dot_q4_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  return dot_f32<dequant_block_q4_0, sizeof(BlockQ4_0)>(w, x, n_blocks);
}
float dot_q4_1_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  return dot_f32<dequant_block_q4_1, sizeof(BlockQ4_1)>(w, x, n_blocks);
}
float dot_q8_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  return dot_f32<dequant_block_q8_0, sizeof(BlockQ8_0)>(w, x, n_blocks);
}

float dot_q4_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float*, std::size_t n_blocks) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ4_0);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const uint8x16_t q = vld1q_u8(a + 2);
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    const int32x4_t sumi = dot_i8(lo, hi, load_s8(b + 2), load_s8(b + 18));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), half(a) * half(b));
  }
  return hsum(acc);
}

float dot_q4_1_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  float acc_min = 0.0f;
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ4_1);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const uint8x16_t q = vld1q_u8(a + 4);
    const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
    const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    const int32x4_t sumi = dot_i8(lo, hi, load_s8(b + 2), load_s8(b + 18));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), half(a) * half(b));
    acc_min += half(a + 2) * xs[i];
  }
  return hsum(acc) + acc_min;
}

float dot_q8_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float*, std::size_t n_blocks) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ8_0);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const int32x4_t sumi = dot_i8(load_s8(a + 2), load_s8(a + 18), load_s8(b + 2), load_s8(b + 18));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sumi), half(a) * half(b));
  }
  return hsum(acc);
}

}  // namespace edgellm::cpu::neon
