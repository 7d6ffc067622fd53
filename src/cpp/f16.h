// IEEE binary16 <-> binary32, scalar and exact: f16 -> f32 is exact; f32 -> f16 rounds to nearest even (as numpy's
// astype(float16) and F16C do), overflows to +-inf, keeps NaN a quiet NaN. The one definition used by the quant
// block scales, the KV cache's f16 storage and its SIMD row converters' tails.
#pragma once

#include <cstdint>

namespace edgellm {

std::uint16_t f32_to_f16(float value);
float f16_to_f32(std::uint16_t bits);

}  // namespace edgellm
