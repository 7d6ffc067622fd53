// AVX2+FMA path of ternary.h.
//   Decode: 8 weights at a time: the 16 bits of two packed bytes broadcast to 8 lanes, shifted by 0, 2, .., 14
//           (vpsrlvd), masked to the code, minus 1, converted and FMA'd with x; 4 accumulators.
//   LutInt8: 16 rows x 8 bytes (one 32-activation block) are loaded and transposed in registers so that one
//           __m128i holds byte j of the 16 rows; its low nibbles index the table of pair 2j and its high
//           nibbles the table of pair 2j+1 (the two tables are adjacent in memory: one 32-byte load feeds both
//           128-bit lanes of _mm256_shuffle_epi8). The int8 results are widened to int16 and summed per row
//           (|sum| <= 16 * 127, exact), then scaled by s_b and accumulated in double exactly as the scalar path.
#include <cstring>

#include "simd/avx2.h"
#include "ternary.h"
#include "ternary_impl.h"

namespace edgellm::cpu::avx2 {

using edgellm::avx2::hsum;

void ternary_decode_rows(const std::uint8_t* packed, const float* scale, const float* x, float* y, std::size_t kp,
                         std::size_t row_begin, std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  const __m256i shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i three = _mm256_set1_epi32(3), one = _mm256_set1_epi32(1);
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const std::uint8_t* p = packed + r * row_bytes;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (std::size_t j = 0; j < row_bytes; j += 8) {  // row_bytes is a multiple of 16
      std::uint64_t bits;
      std::memcpy(&bits, p + j, 8);
      for (int g = 0; g < 4; ++g) {
        const __m256i v = _mm256_set1_epi32(static_cast<int>((bits >> (16 * g)) & 0xFFFF));
        const __m256i w = _mm256_sub_epi32(_mm256_and_si256(_mm256_srlv_epi32(v, shifts), three), one);
        acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(w), _mm256_loadu_ps(x + 4 * j + 8 * g), acc[g]);
      }
    }
    y[r] = scale[r] * hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  }
}

namespace {

// in[i] holds 8 bytes of row i in its low half (i < 16); out[j] = byte j of rows 0..15, in row order.
inline void transpose_16x8(const __m128i in[16], __m128i out[8]) {
  __m128i a[8], b[8], c[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm_unpacklo_epi8(in[2 * i], in[2 * i + 1]);  // rows 2i,2i+1: bytes 0..7
  for (int i = 0; i < 4; ++i) {
    b[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);      // rows 4i..4i+3, bytes 0..3
    b[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);  // rows 4i..4i+3, bytes 4..7
  }
  // b[0],b[1]: rows 0-3; b[2],b[3]: rows 4-7; b[4],b[5]: rows 8-11; b[6],b[7]: rows 12-15
  for (int h = 0; h < 2; ++h) {  // h = 0: rows 0-7, h = 1: rows 8-15
    const __m128i r03_lo = b[4 * h], r03_hi = b[4 * h + 1], r47_lo = b[4 * h + 2], r47_hi = b[4 * h + 3];
    c[4 * h + 0] = _mm_unpacklo_epi32(r03_lo, r47_lo);  // bytes 0,1 of 8 rows
    c[4 * h + 1] = _mm_unpackhi_epi32(r03_lo, r47_lo);  // bytes 2,3
    c[4 * h + 2] = _mm_unpacklo_epi32(r03_hi, r47_hi);  // bytes 4,5
    c[4 * h + 3] = _mm_unpackhi_epi32(r03_hi, r47_hi);  // bytes 6,7
  }
  for (int q = 0; q < 4; ++q) {
    out[2 * q] = _mm_unpacklo_epi64(c[q], c[4 + q]);
    out[2 * q + 1] = _mm_unpackhi_epi64(c[q], c[4 + q]);
  }
}

}  // namespace

void ternary_lut_int8_rows(const std::uint8_t* packed, const float* scale, const std::int8_t* table,
                           const double* block_scale, float* y, std::size_t kp, std::size_t row_begin,
                           std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  std::size_t r0 = row_begin;
  for (; r0 + 16 <= row_end; r0 += 16) {
    const std::uint8_t* p = packed + r0 * row_bytes;
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (std::size_t b = 0; b < kp / 32; ++b) {
      __m128i in[16], col[8];
      for (int i = 0; i < 16; ++i) in[i] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + i * row_bytes + 8 * b));
      transpose_16x8(in, col);
      __m256i sum16 = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m128i c = col[j];
        const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(c, 4), c), low_mask);
        const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 32 * (8 * b + j)));
        const __m256i v = _mm256_shuffle_epi8(t, idx);
        sum16 = _mm256_add_epi16(sum16, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
        sum16 = _mm256_add_epi16(sum16, _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)));
      }
      const __m256d s = _mm256_set1_pd(block_scale[b]);
      const __m256i lo32 = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(sum16));       // rows 0..7
      const __m256i hi32 = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sum16, 1));  // rows 8..15
      acc[0] = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(lo32)), s, acc[0]);
      acc[1] = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(lo32, 1)), s, acc[1]);
      acc[2] = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(hi32)), s, acc[2]);
      acc[3] = _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(hi32, 1)), s, acc[3]);
    }
    for (int g = 0; g < 4; ++g) {
      const __m256d sc = _mm256_cvtps_pd(_mm_loadu_ps(scale + r0 + 4 * g));
      _mm_storeu_ps(y + r0 + 4 * g, _mm256_cvtpd_ps(_mm256_mul_pd(acc[g], sc)));
    }
  }
  for (std::size_t r = r0; r < row_end; ++r) {
    y[r] = scalar::ternary_lut_int8_row(packed + r * row_bytes, scale[r], table, block_scale, kp);
  }
}

}  // namespace edgellm::cpu::avx2
