// AVX2 four-row dot products of engine_kernels.h. Per row, the operations are exactly those of quant_avx2.cpp's
// dot_q4_0_q8_0 / dot_q4_1_q8_0 / dot_q8_0_q8_0 (same unpacking, same maddubs/madd lanes, same FMA into one
// 8-lane accumulator, same horizontal sum, the Q4_1 minimum term summed in the same scalar order), so the results
// are bit-identical to those kernels (tests/cpp/test_engine_kernels.cpp checks it).
#include <cmath>
#include <cstring>

#include "engine_kernels.h"
#include "quant.h"
#include "simd/avx2.h"

namespace edgellm::cpu::avx2 {
namespace {

using edgellm::avx2::hsum;

inline float half(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256i unpack_nibbles(const std::uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask));
}

inline __m256i dot_i8(__m256i a, __m256i b) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline __m256i load_q8(const std::uint8_t* block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
}

}  // namespace

void dot4_q4_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float*,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const __m256i eight = _mm256_set1_epi8(8);
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const float db = half(b);
    for (int j = 0; j < 4; ++j) {
      const std::uint8_t* a = w + j * row_bytes + i * sizeof(BlockQ4_0);
      const __m256i qa = _mm256_sub_epi8(unpack_nibbles(a + 2), eight);
      const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(qa, qb));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * db), sumi, acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

void dot4_q4_1_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float acc_min[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  const __m256i ones_i16 = _mm256_set1_epi16(1);
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const float db = half(b);
    for (int j = 0; j < 4; ++j) {
      const std::uint8_t* a = w + j * row_bytes + i * sizeof(BlockQ4_1);
      const __m256i sumi = _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(a + 4), qb), ones_i16);
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * db), _mm256_cvtepi32_ps(sumi), acc[j]);
      // An explicit FMA, as in quant_avx2.cpp's dot_q4_1_q8_0, so that the two agree whatever the compiler does.
      acc_min[j] = std::fma(half(a + 2), xs[i], acc_min[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]) + acc_min[j];
}

void dot4_q8_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float*,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const float db = half(b);
    for (int j = 0; j < 4; ++j) {
      const std::uint8_t* a = w + j * row_bytes + i * sizeof(BlockQ8_0);
      const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(load_q8(a), qb));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(half(a) * db), sumi, acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

}  // namespace edgellm::cpu::avx2
