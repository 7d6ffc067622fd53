// Scalar reference path of quant.h: one block at a time, one float accumulator, elements in index order.
#include <cstring>

#include "quant.h"
#include "quant_impl.h"

namespace edgellm::cpu::scalar {
namespace {

// memcpy: the blocks are packed (18/20/34 bytes), so a block pointer is not aligned for its uint16 fields.
template <class Block>
Block load_block(const std::uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

}  // namespace

void dequantize_q4_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i, y += 32) {
    const BlockQ4_0 b = load_block<BlockQ4_0>(blocks + i * sizeof(BlockQ4_0));
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((b.qs[j] & 0x0F) - 8);
      y[j + 16] = d * static_cast<float>((b.qs[j] >> 4) - 8);
    }
  }
}

void dequantize_q4_1(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i, y += 32) {
    const BlockQ4_1 b = load_block<BlockQ4_1>(blocks + i * sizeof(BlockQ4_1));
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    // d * nib is exact (11-bit d times a 4-bit integer), so d * nib + m rounds once whether or not the
    // compiler fuses it into an FMA: every path gives the same bits.
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(b.qs[j] & 0x0F) + m;
      y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
    }
  }
}

void dequantize_q8_0(const std::uint8_t* blocks, float* y, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i, y += 32) {
    const BlockQ8_0 b = load_block<BlockQ8_0>(blocks + i * sizeof(BlockQ8_0));
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b.qs[j]);
  }
}

float dot_q4_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  float acc = 0.0f;
  float wd[32];
  for (std::size_t i = 0; i < n_blocks; ++i, x += 32) {
    dequantize_q4_0(w + i * sizeof(BlockQ4_0), wd, 1);
    for (int j = 0; j < 32; ++j) acc += wd[j] * x[j];
  }
  return acc;
}

float dot_q4_1_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  float acc = 0.0f;
  float wd[32];
  for (std::size_t i = 0; i < n_blocks; ++i, x += 32) {
    dequantize_q4_1(w + i * sizeof(BlockQ4_1), wd, 1);
    for (int j = 0; j < 32; ++j) acc += wd[j] * x[j];
  }
  return acc;
}

float dot_q8_0_f32(const std::uint8_t* w, const float* x, std::size_t n_blocks) {
  float acc = 0.0f;
  float wd[32];
  for (std::size_t i = 0; i < n_blocks; ++i, x += 32) {
    dequantize_q8_0(w + i * sizeof(BlockQ8_0), wd, 1);
    for (int j = 0; j < 32; ++j) acc += wd[j] * x[j];
  }
  return acc;
}

float dot_q4_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float*, std::size_t n_blocks) {
  float acc = 0.0f;
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const BlockQ4_0 a = load_block<BlockQ4_0>(w + i * sizeof(BlockQ4_0));
    const BlockQ8_0 b = load_block<BlockQ8_0>(xq + i * sizeof(BlockQ8_0));
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += ((a.qs[j] & 0x0F) - 8) * b.qs[j] + ((a.qs[j] >> 4) - 8) * b.qs[j + 16];
    }
    acc += static_cast<float>(sumi) * (fp16_to_fp32(a.d) * fp16_to_fp32(b.d));
  }
  return acc;
}

float dot_q4_1_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float* xs, std::size_t n_blocks) {
  float acc = 0.0f;
  float acc_min = 0.0f;  // sum over blocks of m_w * d_x * sum(q_x), kept apart as ggml does
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const BlockQ4_1 a = load_block<BlockQ4_1>(w + i * sizeof(BlockQ4_1));
    const BlockQ8_0 b = load_block<BlockQ8_0>(xq + i * sizeof(BlockQ8_0));
    int sumi = 0;
    for (int j = 0; j < 16; ++j) sumi += (a.qs[j] & 0x0F) * b.qs[j] + (a.qs[j] >> 4) * b.qs[j + 16];
    acc += static_cast<float>(sumi) * (fp16_to_fp32(a.d) * fp16_to_fp32(b.d));
    acc_min += fp16_to_fp32(a.m) * xs[i];
  }
  return acc + acc_min;
}

float dot_q8_0_q8_0(const std::uint8_t* w, const std::uint8_t* xq, const float*, std::size_t n_blocks) {
  float acc = 0.0f;
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const BlockQ8_0 a = load_block<BlockQ8_0>(w + i * sizeof(BlockQ8_0));
    const BlockQ8_0 b = load_block<BlockQ8_0>(xq + i * sizeof(BlockQ8_0));
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += a.qs[j] * b.qs[j];
    acc += static_cast<float>(sumi) * (fp16_to_fp32(a.d) * fp16_to_fp32(b.d));
  }
  return acc;
}

}  // namespace edgellm::cpu::scalar
