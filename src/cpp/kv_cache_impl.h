// Per-path row conversions float32 <-> IEEE binary16 used by kv_cache.cpp (and the tests). All paths round to
// nearest-even, keep subnormals, overflow to +-inf and keep NaN a NaN, so they give identical bits for every
// non-NaN input (the C++ test program checks this against the scalar path).
#pragma once

#include <cstddef>
#include <cstdint>

#define EDGELLM_KV_CONVERT_DECLARE(ns)                                           \
  namespace ns {                                                                 \
  void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n);      \
  void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n);      \
  }

namespace edgellm::kv {
EDGELLM_KV_CONVERT_DECLARE(scalar)
EDGELLM_KV_CONVERT_DECLARE(avx2)  // F16C (vcvtps2ph / vcvtph2ps)
EDGELLM_KV_CONVERT_DECLARE(neon)  // fcvtn / fcvtl
}  // namespace edgellm::kv

#undef EDGELLM_KV_CONVERT_DECLARE
