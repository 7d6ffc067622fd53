// Scalar reference path of ternary.h: one row at a time, elements in index order.
#include "ternary.h"
#include "ternary_impl.h"

namespace edgellm::cpu::scalar {

void ternary_decode_rows(const std::uint8_t* packed, const float* scale, const float* x, float* y, std::size_t kp,
                         std::size_t row_begin, std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const std::uint8_t* p = packed + r * row_bytes;
    float acc = 0.0f;
    for (std::size_t j = 0; j < row_bytes; ++j) {
      for (int i = 0; i < 4; ++i) {
        const int w = ((p[j] >> (2 * i)) & 3) - 1;
        acc += static_cast<float>(w) * x[4 * j + i];
      }
    }
    y[r] = scale[r] * acc;
  }
}

void ternary_lut_f32_rows(const std::uint8_t* packed, const float* scale, const float* table, float* y,
                          std::size_t kp, std::size_t row_begin, std::size_t row_end) {
  const std::size_t row_bytes = kp / 4;
  for (std::size_t r = row_begin; r < row_end; ++r) {
    const std::uint8_t* p = packed + r * row_bytes;
    float acc = 0.0f;
    for (std::size_t j = 0; j < row_bytes; ++j) {
      acc += table[32 * j + (p[j] & 0x0F)];          // pair 2j: weights 4j, 4j+1
      acc += table[32 * j + 16 + (p[j] >> 4)];       // pair 2j+1: weights 4j+2, 4j+3
    }
    y[r] = scale[r] * acc;
  }
}

float ternary_lut_int8_row(const std::uint8_t* p, float scale, const std::int8_t* table, const double* block_scale,
                           std::size_t kp) {
  double acc = 0.0;
  for (std::size_t b = 0; b < kp / 32; ++b) {
    int isum = 0;
    for (std::size_t j = 8 * b; j < 8 * b + 8; ++j) {
      isum += table[32 * j + (p[j] & 0x0F)] + table[32 * j + 16 + (p[j] >> 4)];
    }
    acc += static_cast<double>(isum) * block_scale[b];  // the product is exact: fused or not, same bits
  }
  return static_cast<float>(acc * static_cast<double>(scale));
}

void ternary_lut_int8_rows(const std::uint8_t* packed, const float* scale, const std::int8_t* table,
                           const double* block_scale, float* y, std::size_t kp, std::size_t row_begin,
                           std::size_t row_end) {
  for (std::size_t r = row_begin; r < row_end; ++r) {
    y[r] = ternary_lut_int8_row(packed + r * (kp / 4), scale[r], table, block_scale, kp);
  }
}

}  // namespace edgellm::cpu::scalar
