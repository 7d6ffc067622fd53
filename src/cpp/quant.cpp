// Dispatcher, f16 conversions, quantizers and scale checks of quant.h.
#include "quant.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant_impl.h"
#include "quant_parallel.h"

namespace edgellm::cpu {
namespace {

void require_supported(SimdPath path) {
  if (!simd_path_supported(path)) {
    throw std::invalid_argument(std::string("simd path '") + simd_path_name(path) +
                                "' is not supported on this build and CPU");
  }
}

std::uint32_t f32_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float f32_from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The product x * id rounded to float32 and hidden from the optimizer (a volatile round trip), so that the
// following "+ 8.5" / "+ 0.5" cannot be contracted into an FMA. numpy (gguf.quants) rounds the product and the sum
// separately; with -ffp-contract=fast (GCC's default for C++) an aarch64 build (or x86 with -mfma) would otherwise
// fuse them and, rarely, truncate to the other nibble (tests/cpp/test_quant.cpp holds such a block). Computing in
// double does not help: GCC narrows float(double(a) * double(b)) back to a float multiply. Quantizing is not on
// the hot path (once per weight at load, and the Q8_0 activations only multiply).
float mul_f32(float a, float b) {
  volatile float product = a * b;
  return product;
}

std::string where(std::size_t row, std::size_t block) {
  return "row " + std::to_string(row) + ", block " + std::to_string(block) + " (elements " +
         std::to_string(block * kQuantBlockElems) + ".." + std::to_string(block * kQuantBlockElems + 31) + ")";
}

std::uint16_t scale_to_fp16(float value, const char* what, std::size_t row, std::size_t block) {
  const std::uint16_t h = fp32_to_fp16(value);
  if ((h & 0x7C00) == 0x7C00) {
    throw std::invalid_argument("quantize: " + where(row, block) + ": " + what + " = " + std::to_string(value) +
                                " does not fit in float16 (|value| must stay below 65520)");
  }
  return h;
}

// The three quantizers follow gguf.quants (gguf-py), itself a copy of ggml's quantize_row_q*_ref:
//   Q4_0: d = (element of largest |x|, first one on ties) / -8, id = 1/d (0 when d == 0),
//         nib = min(15, trunc(x*id + 8.5))
//   Q4_1: d = (max - min) / 15, id = 1/d (0 when d == 0), nib = min(15, trunc((x - min)*id + 0.5)), m = min
//   Q8_0: d = max|x| / 127, id = 1/d (0 when d == 0), q = round-half-away-from-zero(x*id)
// with d and m stored as f16 (round to nearest even) but the float32 d used for id.
void quantize_block_q4_0(const float* x, std::uint8_t* out, std::size_t row, std::size_t block) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  BlockQ4_0 b;
  b.d = scale_to_fp16(d, "scale d", row, block);
  for (int j = 0; j < 16; ++j) {
    const int lo = static_cast<int>(mul_f32(x[j], id) + 8.5f);
    const int hi = static_cast<int>(mul_f32(x[j + 16], id) + 8.5f);
    b.qs[j] = static_cast<std::uint8_t>((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
  }
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q4_1(const float* x, std::uint8_t* out, std::size_t row, std::size_t block) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    min = x[j] < min ? x[j] : min;
    max = x[j] > max ? x[j] : max;
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  BlockQ4_1 b;
  b.d = scale_to_fp16(d, "scale d", row, block);
  b.m = scale_to_fp16(min, "minimum m", row, block);
  for (int j = 0; j < 16; ++j) {
    const int lo = static_cast<int>(mul_f32(x[j] - min, id) + 0.5f);
    const int hi = static_cast<int>(mul_f32(x[j + 16] - min, id) + 0.5f);
    b.qs[j] = static_cast<std::uint8_t>((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
  }
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q8_0(const float* x, std::uint8_t* out, std::size_t row, std::size_t block) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  BlockQ8_0 b;
  b.d = scale_to_fp16(d, "scale d", row, block);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));  // one rounding: nothing to fuse
  std::memcpy(out, &b, sizeof b);
}

std::size_t blocks_per_row_checked(std::size_t cols) {
  if (cols % kQuantBlockElems != 0) {
    throw std::invalid_argument("quantized matvec: cols = " + std::to_string(cols) +
                                " is not a multiple of the block size 32");
  }
  return cols / kQuantBlockElems;
}

using DequantFn = void (*)(const std::uint8_t*, float*, std::size_t);
using DotF32Fn = float (*)(const std::uint8_t*, const float*, std::size_t);
using DotQ8Fn = float (*)(const std::uint8_t*, const std::uint8_t*, const float*, std::size_t);

struct Kernels {
  DequantFn dequant;
  DotF32Fn dot_f32;
  DotQ8Fn dot_q8_0;
};

#define EDGELLM_QUANT_KERNELS(ns, type)                                                              \
  ((type) == QuantType::Q4_0   ? Kernels{ns::dequantize_q4_0, ns::dot_q4_0_f32, ns::dot_q4_0_q8_0} \
   : (type) == QuantType::Q4_1 ? Kernels{ns::dequantize_q4_1, ns::dot_q4_1_f32, ns::dot_q4_1_q8_0} \
                               : Kernels{ns::dequantize_q8_0, ns::dot_q8_0_f32, ns::dot_q8_0_q8_0})

// A path that is not compiled in cannot be reached: require_supported() rejects it first.
Kernels kernels_for(QuantType type, SimdPath path) {
  require_supported(path);
  quant_block_bytes(type);  // validates the type
  switch (path) {
#if defined(EDGELLM_HAVE_AVX2)
    case SimdPath::Avx2: return EDGELLM_QUANT_KERNELS(avx2, type);
#endif
#if defined(EDGELLM_HAVE_NEON)
    case SimdPath::Neon: return EDGELLM_QUANT_KERNELS(neon, type);
#endif
    default: return EDGELLM_QUANT_KERNELS(scalar, type);
  }
}

#undef EDGELLM_QUANT_KERNELS

}  // namespace

QuantType quant_type_from_id(int ggml_type_id) {
  switch (ggml_type_id) {
    case static_cast<int>(QuantType::Q4_0): return QuantType::Q4_0;
    case static_cast<int>(QuantType::Q4_1): return QuantType::Q4_1;
    case static_cast<int>(QuantType::Q8_0): return QuantType::Q8_0;
  }
  throw std::invalid_argument("quant type id " + std::to_string(ggml_type_id) +
                              " is not supported; expected Q4_0 (2), Q4_1 (3) or Q8_0 (8)");
}

const char* quant_type_name(QuantType type) {
  switch (type) {
    case QuantType::Q4_0: return "q4_0";
    case QuantType::Q4_1: return "q4_1";
    case QuantType::Q8_0: return "q8_0";
  }
  return "unknown";
}

std::size_t quant_block_bytes(QuantType type) {
  switch (type) {
    case QuantType::Q4_0: return sizeof(BlockQ4_0);
    case QuantType::Q4_1: return sizeof(BlockQ4_1);
    case QuantType::Q8_0: return sizeof(BlockQ8_0);
  }
  throw std::invalid_argument("quant type id " + std::to_string(static_cast<int>(type)) + " is not supported");
}

float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1F;
  const std::uint32_t mant = h & 0x3FF;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7F800000u | (mant << 13));  // inf / NaN (payload kept)
  return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

// Round to nearest even, overflow to inf, NaN stays NaN (F. Giesen's float_to_half_fast3_rtne).
std::uint16_t fp32_to_fp16(float f) {
  std::uint32_t u = f32_bits(f);
  const std::uint32_t sign = u & 0x80000000u;
  u ^= sign;
  std::uint16_t h;
  if (u >= (143u << 23)) {  // >= 65536, inf or NaN
    h = u > 0x7F800000u ? 0x7E00 : 0x7C00;
  } else if (u < (113u << 23)) {  // below the smallest normal half: let the FPU round the subnormal
    const std::uint32_t magic = 126u << 23;  // 0.5f: adding it aligns the half subnormal's lsb with float's
    const float v = f32_from_bits(u) + f32_from_bits(magic);
    h = static_cast<std::uint16_t>(f32_bits(v) - magic);
  } else {
    const std::uint32_t mant_odd = (u >> 13) & 1;
    u += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xFFF + mant_odd;  // rebias, round half to even
    h = static_cast<std::uint16_t>(u >> 13);  // a carry out of the mantissa rounds up to inf correctly
  }
  return static_cast<std::uint16_t>(h | (sign >> 16));
}

void quantize(QuantType type, const float* x, std::uint8_t* blocks, std::size_t n_rows, std::size_t blocks_per_row) {
  const std::size_t block_bytes = quant_block_bytes(type);
  for (std::size_t r = 0; r < n_rows; ++r) {
    for (std::size_t b = 0; b < blocks_per_row; ++b) {
      const std::size_t i = r * blocks_per_row + b;
      const float* xb = x + i * kQuantBlockElems;
      for (std::size_t j = 0; j < kQuantBlockElems; ++j) {
        if (!std::isfinite(xb[j])) {
          throw std::invalid_argument("quantize: " + where(r, b) + ": element " +
                                      std::to_string(b * kQuantBlockElems + j) + " is " + std::to_string(xb[j]) +
                                      " (inputs must be finite)");
        }
      }
      std::uint8_t* out = blocks + i * block_bytes;
      switch (type) {
        case QuantType::Q4_0: quantize_block_q4_0(xb, out, r, b); break;
        case QuantType::Q4_1: quantize_block_q4_1(xb, out, r, b); break;
        case QuantType::Q8_0: quantize_block_q8_0(xb, out, r, b); break;
      }
    }
  }
}

void dequantize(QuantType type, const std::uint8_t* blocks, float* y, std::size_t n_blocks, SimdPath path) {
  kernels_for(type, path).dequant(blocks, y, n_blocks);
}

void check_quant_scales(QuantType type, const std::uint8_t* blocks, std::size_t n_rows, std::size_t blocks_per_row) {
  const std::size_t block_bytes = quant_block_bytes(type);
  const std::size_t n_halves = type == QuantType::Q4_1 ? 2 : 1;  // d, and m for Q4_1: the first fields
  for (std::size_t i = 0; i < n_rows * blocks_per_row; ++i) {
    for (std::size_t k = 0; k < n_halves; ++k) {
      std::uint16_t h;
      std::memcpy(&h, blocks + i * block_bytes + 2 * k, 2);
      if ((h & 0x7C00) == 0x7C00) {
        throw std::invalid_argument(std::string(quant_type_name(type)) + " blocks: " +
                                    where(i / blocks_per_row, i % blocks_per_row) + ": " +
                                    (k == 0 ? "scale d" : "minimum m") + " is " +
                                    ((h & 0x3FF) ? "NaN" : "Inf") + " (corrupt block data)");
      }
    }
  }
}

void quant_matvec_f32(QuantType type, const std::uint8_t* w, const float* x, float* y, std::size_t rows,
                      std::size_t cols, SimdPath path, int n_threads) {
  const std::size_t nb = blocks_per_row_checked(cols);
  const Kernels k = kernels_for(type, path);
  const std::size_t row_bytes = nb * quant_block_bytes(type);
  parallel_rows(rows, n_threads, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) y[r] = k.dot_f32(w + r * row_bytes, x, nb);
  });
}

void quant_matvec_q8_0_prequantized(QuantType type, const std::uint8_t* w, const std::uint8_t* xq, float* y,
                                    std::size_t rows, std::size_t cols, SimdPath path, int n_threads) {
  const std::size_t nb = blocks_per_row_checked(cols);
  const Kernels k = kernels_for(type, path);
  const std::size_t row_bytes = nb * quant_block_bytes(type);
  std::vector<float> xs(nb);  // d_x * sum(q_x) per activation block, once for all rows
  for (std::size_t b = 0; b < nb; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, xq + b * sizeof blk, sizeof blk);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += blk.qs[j];
    xs[b] = fp16_to_fp32(blk.d) * static_cast<float>(sum);
  }
  parallel_rows(rows, n_threads, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) y[r] = k.dot_q8_0(w + r * row_bytes, xq, xs.data(), nb);
  });
}

void quant_matvec_q8_0(QuantType type, const std::uint8_t* w, const float* x, float* y, std::size_t rows,
                       std::size_t cols, SimdPath path, int n_threads) {
  const std::size_t nb = blocks_per_row_checked(cols);
  std::vector<std::uint8_t> xq(nb * sizeof(BlockQ8_0));
  quantize(QuantType::Q8_0, x, xq.data(), 1, nb);
  quant_matvec_q8_0_prequantized(type, w, xq.data(), y, rows, cols, path, n_threads);
}

}  // namespace edgellm::cpu
