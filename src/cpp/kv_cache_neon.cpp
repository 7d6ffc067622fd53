// NEON fp16 conversions for kv_cache.cpp (aarch64: FCVTN/FCVTL are base AArch64 instructions; rounding is the
// FPCR mode, round-to-nearest-even by default, and FZ16 flushing is off by default on Linux).
#include <arm_neon.h>

#include "kv_cache.h"
#include "kv_cache_impl.h"

namespace edgellm::kv::neon {

void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace edgellm::kv::neon
