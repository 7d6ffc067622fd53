// F16C conversions for kv_cache.cpp (this file is compiled with -mavx2 -mfma -mf16c; used only when the CPU
// has AVX2, and every AVX2 CPU has F16C).
#include <immintrin.h>

#include "kv_cache.h"
#include "kv_cache_impl.h"

namespace edgellm::kv::avx2 {

void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace edgellm::kv::avx2
