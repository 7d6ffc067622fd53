// AVX2 four-row dot products of engine_kernels.h. Per row, the arithmetic is exactly that of quant_avx2.cpp's
// dot_q4_0_q8_0 / dot_q4_1_q8_0 / dot_q8_0_q8_0 (same integer block sums, same float scale half(d_w) * half(d_x),
// same FMA into one 8-lane accumulator, same horizontal sum, the Q4_1 minimum term as the same chain of FMAs), so
// the results are bit-identical to those kernels (tests/cpp/test_engine.cpp checks it).
//
// What differs is the instruction mix. The model's weights fit in this machine's L3, so these loops are bound by
// vector-port throughput, not by memory: per block, the four rows' f16 headers are gathered into one register
// and converted by one vcvtph2ps (instead of one convert, multiply and broadcast per row), the Q4_1 nibbles are
// unpacked by a 128-bit broadcast load and a per-lane shift (no cross-lane insert), and the four Q4_1 minimum
// terms are one 4-lane FMA. On the 2-core Xeon VM this took one thread's Q4_1 matvecs from ~9.7 to ~15.6 GB/s
// and the Q8_0 LM head from ~16 to ~20 GB/s (a standalone single-thread microbenchmark over 50 MB / 30 MB of
// rows, not in the repository).
#include <cmath>
#include <cstring>

#include "engine_kernels.h"
#include "f16.h"
#include "quant.h"
#include "simd/avx2.h"

namespace edgellm::cpu::avx2 {
namespace {

using edgellm::avx2::hsum;

inline float half(const std::uint8_t* p) { return edgellm::avx2::half_at(p); }
using edgellm::avx2::unpack_nibbles;

inline __m256i dot_i8(__m256i a, __m256i b) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline int load_u32(const std::uint8_t* p) {
  int v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __m256i load_q8(const std::uint8_t* block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
}

// One Q4_1 block of one row (header at a) against the activation block qb: acc + scale_j * sumi, where lane 2j of
// `scales` holds half(d_j) * half(d_x). unpack_nibbles without the cross-lane insert: the 16 packed bytes in both
// halves, the high half shifted right by 4 (per 64-bit lane; the AND drops the bits shifted in from the next byte).
inline __m256 q4_1_row_step(const std::uint8_t* a, __m256i qb, const float* scale, __m256 acc) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 4));
  const __m256i nib = _mm256_and_si256(_mm256_srlv_epi64(_mm256_broadcastsi128_si256(packed),
                                                         _mm256_setr_epi64x(0, 0, 4, 4)),
                                       _mm256_set1_epi8(0x0F));
  const __m256i sumi = _mm256_madd_epi16(_mm256_maddubs_epi16(nib, qb), _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_broadcast_ss(scale), _mm256_cvtepi32_ps(sumi), acc);
}

// Lanes 0..3: half(d_j) * d_x for the four rows' blocks at a, a + row_bytes, ... (the f16 scale first in each
// block), converted by one vcvtph2ps (exact, like half()) and multiplied in float like the single-row kernels.
inline __m256 scales4(const std::uint8_t* a, std::size_t row_bytes, float d_x) {
  const __m128i d = _mm_setr_epi16(static_cast<short>(load_u16(a)), static_cast<short>(load_u16(a + row_bytes)),
                                   static_cast<short>(load_u16(a + 2 * row_bytes)),
                                   static_cast<short>(load_u16(a + 3 * row_bytes)), 0, 0, 0, 0);
  return _mm256_mul_ps(_mm256_cvtph_ps(d), _mm256_set1_ps(d_x));
}

// One Q4_0 block of one row: acc + scale_j * sumi, scale_j = lane j of `scales`.
inline __m256 q4_0_row_step(const std::uint8_t* a, __m256i qb, const float* scale, __m256 acc) {
  const __m256i qa = _mm256_sub_epi8(unpack_nibbles(a + 2), _mm256_set1_epi8(8));
  const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(qa, qb));
  return _mm256_fmadd_ps(_mm256_broadcast_ss(scale), sumi, acc);
}

// One Q8_0 block of one row: acc + scale_j * sumi, scale_j = lane j of `scales`.
inline __m256 q8_0_row_step(const std::uint8_t* a, __m256i qb, const float* scale, __m256 acc) {
  const __m256 sumi = _mm256_cvtepi32_ps(dot_i8(load_q8(a), qb));
  return _mm256_fmadd_ps(_mm256_broadcast_ss(scale), sumi, acc);
}

}  // namespace

void dot4_q4_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float*,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const std::uint8_t* a = w + i * sizeof(BlockQ4_0);
    alignas(32) float scales[8];
    _mm256_store_ps(scales, scales4(a, row_bytes, half(b)));
    // Written out per row (not a loop over j): GCC 12 kept a rolled j loop's accumulators in memory.
    acc[0] = q4_0_row_step(a, qb, &scales[0], acc[0]);
    acc[1] = q4_0_row_step(a + row_bytes, qb, &scales[1], acc[1]);
    acc[2] = q4_0_row_step(a + 2 * row_bytes, qb, &scales[2], acc[2]);
    acc[3] = q4_0_row_step(a + 3 * row_bytes, qb, &scales[3], acc[3]);
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

void dot4_q4_1_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 acc_min = _mm256_setzero_ps();  // lane 2j + 1: row j's minimum term (even lanes: unused)
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const std::uint8_t* a = w + i * sizeof(BlockQ4_1);
    // The four rows' (d, m) headers converted by one vcvtph2ps: [d0 m0 d1 m1 d2 m2 d3 m3], exact like half().
    // Even lanes times d_x are the scales half(a) * half(b) of the single-row kernel (the same float product).
    const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32(load_u32(a), load_u32(a + row_bytes),
                                                     load_u32(a + 2 * row_bytes), load_u32(a + 3 * row_bytes)));
    alignas(32) float scales[8];
    _mm256_store_ps(scales, _mm256_mul_ps(dm, _mm256_set1_ps(half(b))));
    // Written out per row (not a loop over j): GCC 12 kept a rolled j loop's accumulators in memory.
    acc[0] = q4_1_row_step(a, qb, &scales[0], acc[0]);
    acc[1] = q4_1_row_step(a + row_bytes, qb, &scales[2], acc[1]);
    acc[2] = q4_1_row_step(a + 2 * row_bytes, qb, &scales[4], acc[2]);
    acc[3] = q4_1_row_step(a + 3 * row_bytes, qb, &scales[6], acc[3]);
    // Odd lanes: std::fma(m_j, s_i, acc_min_j), the single-row kernel's scalar FMA per row (even lanes are
    // d_j * s_i + junk, never read).
    acc_min = _mm256_fmadd_ps(dm, _mm256_set1_ps(xs[i]), acc_min);
  }
  alignas(32) float mins[8];
  _mm256_store_ps(mins, acc_min);
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]) + mins[2 * j + 1];
}

void dot4_q8_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float*,
                    std::size_t nb, float* out) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (std::size_t i = 0; i < nb; ++i) {
    const std::uint8_t* b = xq + i * sizeof(BlockQ8_0);
    const __m256i qb = load_q8(b);
    const std::uint8_t* a = w + i * sizeof(BlockQ8_0);
    alignas(32) float scales[8];
    _mm256_store_ps(scales, scales4(a, row_bytes, half(b)));
    acc[0] = q8_0_row_step(a, qb, &scales[0], acc[0]);
    acc[1] = q8_0_row_step(a + row_bytes, qb, &scales[1], acc[1]);
    acc[2] = q8_0_row_step(a + 2 * row_bytes, qb, &scales[2], acc[2]);
    acc[3] = q8_0_row_step(a + 3 * row_bytes, qb, &scales[3], acc[3]);
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum(acc[j]);
}

}  // namespace edgellm::cpu::avx2

namespace edgellm::cpu::avx2 {

// quantize_act_q8_scalar's operations on 8 lanes: the same amax (max is exact in any order), the same d and 1/d
// expressions in scalar float, x * id rounded to nearest even by vcvtps2dq (default MXCSR rounding, as nearbyint),
// and the integer sum of the q.
void quantize_act_q8(const float* x, std::size_t nb, std::uint8_t* q, float* s) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (std::size_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kQuantBlockElems;
    __m256 v[4];
    __m256 amax8 = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(xb + 8 * k);
      amax8 = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), amax8);  // a NaN lane is skipped, as by std::max
    }
    const float amax = edgellm::avx2::hmax(amax8);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i qi[4];
    __m256i sum8 = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
      sum8 = _mm256_add_epi32(sum8, qi[k]);
    }
    // int32 -> int8 in element order: packs work per 128-bit lane, the permute restores the order.
    const __m256i packed = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3])),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    std::uint8_t* blk = q + b * sizeof(BlockQ8_0);
    const std::uint16_t dh = f32_to_f16(d);
    std::memcpy(blk, &dh, 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk + 2), packed);
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum8), _mm256_extracti128_si256(sum8, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    const int sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
    s[b] = f16_to_f32(f32_to_f16(d * static_cast<float>(sum)));
  }
}

}  // namespace edgellm::cpu::avx2
