// AVX2+FMA+F16C path of quant.h. f32 activations: each block is expanded to 4 x 8 float weights (exactly the
// dequantized values) and FMA'd into 4 accumulators. Q8_0 activations: ggml's scheme, 32 int8 products per
// block summed exactly with maddubs/madd, then scaled by d_w * d_x into 8 float lanes.
#include <cmath>
#include <cstring>

#include "quant.h"
#include "quant_impl.h"
#include "simd/avx2.h"

namespace edgellm::cpu::avx2 {
namespace {

using edgellm::avx2::hsum;

inline float half(const std::uint8_t* p) { return edgellm::avx2::half_at(p); }
using edgellm::avx2::unpack_nibbles;

// Elements 8k..8k+7 of 32 unsigned (or signed) bytes as floats.
inline __m256 u8_to_ps(__m128i bytes8) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes8)); }
inline __m256 i8_to_ps(__m128i bytes8) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes8)); }

// The four groups of 8 dequantized weights of a 4-bit block. Q4_1: d * nib + m, where d * nib is exact (11-bit
// d, 4-bit nib) so the FMA rounds exactly like the scalar d * nib + m. Q4_0: d * (nib - 8), computed the same way
// as the scalar path (and gguf) so that even the sign of a zero matches.
template <bool kOffset8>
inline void dequant4(const std::uint8_t* qs, __m256 vd, __m256 vm, __m256 out[4]) {
  const __m256i nib = unpack_nibbles(qs);
  const __m128i lo = _mm256_castsi256_si128(nib), hi = _mm256_extracti128_si256(nib, 1);
  const __m256 f[4] = {u8_to_ps(lo), u8_to_ps(_mm_srli_si128(lo, 8)), u8_to_ps(hi), u8_to_ps(_mm_srli_si128(hi, 8))};
  for (int k = 0; k < 4; ++k) {
    out[k] = kOffset8 ? _mm256_mul_ps(vd, _mm256_sub_ps(f[k], _mm256_set1_ps(8.0f))) : _mm256_fmadd_ps(vd, f[k], vm);
  }
}

inline void dequant8(const std::uint8_t* qs, __m256 vd, __m256 out[4]) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16));
  out[0] = _mm256_mul_ps(vd, i8_to_ps(lo));
  out[1] = _mm256_mul_ps(vd, i8_to_ps(_mm_srli_si128(lo, 8)));
  out[2] = _mm256_mul_ps(vd, i8_to_ps(hi));
  out[3] = _mm256_mul_ps(vd, i8_to_ps(_mm_srli_si128(hi, 8)));
}

inline void dequant_block_q4_0(const std::uint8_t* b, __m256 out[4]) {
  dequant4<true>(b + 2, _mm256_set1_ps(half(b)), _mm256_setzero_ps(), out);
}
inline void dequant_block_q4_1(const std::uint8_t* b, __m256 out[4]) {
  dequant4<false>(b + 4, _mm256_set1_ps(half(b)), _mm256_set1_ps(half(b + 2)), out);
}
inline void dequant_block_q8_0(const std::uint8_t* b, __m256 out[4]) { dequant8(b + 2, _mm256_set1_ps(half(b)), out); }

template <void (*Dequant)(const std::uint8_t*, __m256*), std::size_t kBlockBytes>
void dequantize_rows(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  __m256 w[4];
  for (std::size_t i = 0; i < n_blocks; ++i, y += 32) {
    Dequant(blocks + i * kBlockBytes, w);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, w[k]);
  }
}

template <void (*Dequant)(const std::uint8_t*, __m256*), std::size_t kBlockBytes>
float dot_f32(const std::uint8_t* wb, const float* x, std::size_t n_blocks) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 w[4];
  for (std::size_t i = 0; i < n_blocks; ++i, x += 32) {
    Dequant(wb + i * kBlockBytes, w);
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(x + 8 * k), acc[k]);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

// sum of products of 32 signed bytes, as 8 int32 lanes. maddubs needs an unsigned first operand: |a| and
// sign(a)*b give the same products (ggml's mul_sum_i8_pairs). Pair sums stay below 2^15 when |a|, |b| <= 127
// (or |a| <= 8): the activations come from quantize(), which produces [-127, 127].
inline __m256i dot_i8(__m256i a, __m256i b) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline __m256i load_q8(const std::uint8_t* block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
}

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
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ4_0);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qa = _mm256_sub_epi8(unpack_nibbles(a + 2), eight);  // [-8, 7]
    const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(qa, load_q8(b)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * half(b)), sumi, acc);
  }
  return hsum(acc);
}

float dot_q4_1_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks) {
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  const __m256i ones_i16 = _mm256_set1_epi16(1);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ4_1);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    // nibbles are unsigned already: maddubs(nib, q_x) directly; pair sums <= 2 * 15 * 127.
    const __m256i sumi = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(a + 4), qb), ones_i16);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * half(b)), _mm256_cvtepi32_ps(sumi), acc);
    // An explicit FMA (what GCC's default contraction makes of `acc_min += m * s` at -O2 with -mfma), so that the
    // result does not depend on the optimisation level: engine_kernels_avx2.cpp's four-row kernel must match it
    // bit for bit, and a GCC 13 sanitizer build (-O1) did not contract it.
    acc_min = std::fma(half(a + 2), xs[i], acc_min);
  }
  return hsum(acc) + acc_min;
}

float dot_q8_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float*, std::size_t n_blocks) {
  __m256 acc = _mm256_setzero_ps();
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const std::uint8_t* a = w + i * sizeof(BlockQ8_0);
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(load_q8(a), load_q8(b)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * half(b)), sumi, acc);
  }
  return hsum(acc);
}

}  // namespace edgellm::cpu::avx2
