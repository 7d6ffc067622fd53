// Per-path implementations of ternary.h; only ternary.cpp (the dispatcher) calls these. Each computes rows
// [row_begin, row_end) of y; x is zero-padded to kp; tables are built by ternary.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#define EDGELLM_TERNARY_DECLARE(ns)                                                                          \
  namespace ns {                                                                                             \
  void ternary_decode_rows(const std::uint8_t* packed, const float* scale, const float* x_padded, float* y,  \
                           std::size_t kp, std::size_t row_begin, std::size_t row_end);                      \
  void ternary_lut_int8_rows(const std::uint8_t* packed, const float* scale, const std::int8_t* table,       \
                             const double* block_scale, float* y, std::size_t kp, std::size_t row_begin,     \
                             std::size_t row_end);                                                           \
  }

namespace edgellm::cpu {
EDGELLM_TERNARY_DECLARE(scalar)
EDGELLM_TERNARY_DECLARE(avx2)
EDGELLM_TERNARY_DECLARE(neon)

namespace scalar {
void ternary_lut_f32_rows(const std::uint8_t* packed, const float* scale, const float* table, float* y,
                          std::size_t kp, std::size_t row_begin, std::size_t row_end);
// One row of the int8 LUT product (the SIMD paths use it for rows left over after their 16-row groups).
float ternary_lut_int8_row(const std::uint8_t* row, float scale, const std::int8_t* table, const double* block_scale,
                           std::size_t kp);
}  // namespace scalar
}  // namespace edgellm::cpu

#undef EDGELLM_TERNARY_DECLARE
