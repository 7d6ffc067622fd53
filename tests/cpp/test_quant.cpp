// Q4_0/Q4_1/Q8_0: every runnable path against the scalar path (dequantize: bit for bit) and against a
// double-precision reference (matvecs). Bit-exactness with ggml/gguf itself is tested in tests/test_quant.py.
// Tolerances: a float32 sum of n products has error at most about n * eps32 * sum|terms| whatever the order
// (the gamma_n bound). The f32-activation matvec sums cols products of exactly dequantized weights with x; the
// q8_0-activation matvec sums cols/32 exact integer block sums, each scaled by one rounded product d_w * d_x.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "quant.h"
#include "test_main.h"

namespace {

using edgellm::SimdPath;
using edgellm::cpu::QuantType;
using edgellm_test::expect_close;

constexpr double kEps32 = std::numeric_limits<float>::epsilon();

std::vector<std::uint8_t> make_blocks(QuantType t, std::size_t rows, std::size_t cols, std::uint32_t seed) {
  auto w = edgellm_test::random_normal(rows * cols, seed);
  std::vector<std::uint8_t> blocks(rows * cols / 32 * edgellm::cpu::quant_block_bytes(t));
  edgellm::cpu::quantize(t, w.data(), blocks.data(), rows, cols / 32);
  return blocks;
}

int test_fp16() {
  int failures = 0;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = edgellm::cpu::fp16_to_fp32(static_cast<std::uint16_t>(h));
    const std::uint16_t back = edgellm::cpu::fp32_to_fp16(f);
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
    if (nan ? !std::isnan(f) : back != h) {
      std::printf("FAIL fp16 round trip 0x%04x -> %g -> 0x%04x\n", h, f, back);
      ++failures;
    }
  }
  // halfway cases round to even: 1 + 2^-11 -> 1.0, 1 + 3 * 2^-11 -> 1 + 2^-9; 65520 -> inf; 2^-25 -> 0
  const struct {
    float in;
    std::uint16_t out;
  } cases[] = {{1.0f + 0x1p-11f, 0x3C00}, {1.0f + 3 * 0x1p-11f, 0x3C02}, {65520.0f, 0x7C00},
               {65519.0f, 0x7BFF},        {0x1p-25f, 0x0000},           {0x1.8p-25f, 0x0001}, {-0x1p-24f, 0x8001}};
  for (const auto& c : cases) {
    if (edgellm::cpu::fp32_to_fp16(c.in) != c.out) {
      std::printf("FAIL fp32_to_fp16(%a) = 0x%04x, expected 0x%04x\n", c.in, edgellm::cpu::fp32_to_fp16(c.in), c.out);
      ++failures;
    }
  }
  return failures;
}

int test_dequantize(QuantType t, SimdPath path) {
  int failures = 0;
  for (std::size_t nb : {1, 3, 65}) {
    auto blocks = make_blocks(t, 1, nb * 32, 100 + static_cast<std::uint32_t>(nb));
    std::vector<float> ref(nb * 32), got(nb * 32, std::numeric_limits<float>::quiet_NaN());
    edgellm::cpu::dequantize(t, blocks.data(), ref.data(), nb, SimdPath::Scalar);
    edgellm::cpu::dequantize(t, blocks.data(), got.data(), nb, path);
    if (std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)) != 0) {
      std::printf("FAIL dequantize %s [%s] %zu blocks: differs from scalar\n", edgellm::cpu::quant_type_name(t),
                  edgellm::simd_path_name(path), nb);
      ++failures;
    }
  }
  return failures;
}

double q8_value(const std::uint8_t* blocks, std::size_t i) {
  edgellm::cpu::BlockQ8_0 b;
  std::memcpy(&b, blocks + (i / 32) * sizeof b, sizeof b);
  return double(edgellm::cpu::fp16_to_fp32(b.d)) * b.qs[i % 32];
}

int test_matvec(QuantType t, SimdPath path) {
  int failures = 0;
  const std::size_t shapes[][2] = {{1, 32}, {7, 64}, {65, 96}, {33, 1024}, {5, 4096}};
  for (const auto& s : shapes) {
    const std::size_t rows = s[0], cols = s[1];
    const auto w = make_blocks(t, rows, cols, 300 + static_cast<std::uint32_t>(rows));
    std::vector<float> wd(rows * cols);
    edgellm::cpu::dequantize(t, w.data(), wd.data(), rows * cols / 32, SimdPath::Scalar);
    const auto x = edgellm_test::random_normal(cols, 400 + static_cast<std::uint32_t>(cols));
    std::vector<std::uint8_t> xq(cols / 32 * sizeof(edgellm::cpu::BlockQ8_0));
    edgellm::cpu::quantize(QuantType::Q8_0, x.data(), xq.data(), 1, cols / 32);

    for (int threads : {1, 3}) {
      std::vector<float> y(rows, std::numeric_limits<float>::quiet_NaN()), y8(rows, y[0]);
      edgellm::cpu::quant_matvec_f32(t, w.data(), x.data(), y.data(), rows, cols, path, threads);
      edgellm::cpu::quant_matvec_q8_0(t, w.data(), x.data(), y8.data(), rows, cols, path, threads);
      for (std::size_t r = 0; r < rows; ++r) {
        double ref = 0, abs_sum = 0, ref8 = 0, abs_sum8 = 0;
        // Q4_1 splits each block into d_w d_x sum(nib q_x) + m d_x sum(q_x): those two terms can each exceed the
        // block's sum|w x| by |m| sum|x q|, which the rounding bound must cover.
        double min_terms = 0;
        for (std::size_t c = 0; c < cols; ++c) {
          const double wv = wd[r * cols + c];
          ref += wv * x[c];
          abs_sum += std::fabs(wv * x[c]);
          ref8 += wv * q8_value(xq.data(), c);
          abs_sum8 += std::fabs(wv * q8_value(xq.data(), c));
          if (t == QuantType::Q4_1) {
            edgellm::cpu::BlockQ4_1 b;
            std::memcpy(&b, w.data() + (r * cols + c) / 32 * sizeof b, sizeof b);
            min_terms += 2 * std::fabs(edgellm::cpu::fp16_to_fp32(b.m) * q8_value(xq.data(), c));
          }
        }
        failures += expect_close("quant_matvec_f32", path, r, y[r], ref, (cols + 2) * kEps32 * abs_sum + 1e-30);
        // per block: d_w * d_x rounded once (+ eps), its product with the integer sum (+ eps), then the sum of
        // cols/32 block terms (and for q4_1 the separate min term): (cols/32 + 4) eps relative to sum|terms|
        failures += expect_close("quant_matvec_q8_0", path, r, y8[r], ref8, (cols / 32 + 4) * 2 * kEps32 * (abs_sum8 + min_terms) + 1e-30);
      }
    }
  }
  return failures;
}

}  // namespace

int test_quant() {
  int failures = test_fp16();
  for (SimdPath path : edgellm_test::runnable_paths()) {
    for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0}) {
      failures += test_dequantize(t, path) + test_matvec(t, path);
    }
  }
  return failures;
}
