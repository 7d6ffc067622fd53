// NEON helpers shared by the *_neon.cpp translation units (aarch64 only).
#pragma once

#include <arm_neon.h>

namespace edgellm::neon {

inline float hsum(float32x4_t v) { return vaddvq_f32(v); }
inline float hmax(float32x4_t v) { return vmaxvq_f32(v); }

// exp(x) per lane; the same Cephes reduction and polynomial as simd/avx2.h's exp_ps (about 2 ulp, inputs
// clamped to [-87.3, 88.3]).
inline float32x4_t exp_ps(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3365447504f)), vdupq_n_f32(88.3762626647949f));
  float32x4_t fx = vfmaq_f32(vdupq_n_f32(0.5f), x, vdupq_n_f32(1.44269504088896341f));
  fx = vrndmq_f32(fx);
  x = vfmsq_f32(x, fx, vdupq_n_f32(0.693359375f));
  x = vfmsq_f32(x, fx, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
  y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, x);
  y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, x);
  y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, x);
  y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, x);
  y = vfmaq_f32(vaddq_f32(x, vdupq_n_f32(1.0f)), y, vmulq_f32(x, x));
  int32x4_t n = vcvtq_s32_f32(fx);
  n = vshlq_n_s32(vaddq_s32(n, vdupq_n_s32(127)), 23);
  return vmulq_f32(y, vreinterpretq_f32_s32(n));
}

}  // namespace edgellm::neon
