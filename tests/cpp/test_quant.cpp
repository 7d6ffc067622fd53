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

// An independent transcription of ggml's quantize_row_q*_ref in which every float32 operation goes through a
// volatile, so the compiler cannot contract x * id + c into an FMA: the library must give the same bytes on every
// target (tests/test_quant.py checks the same against gguf.quants on x86-64; this covers aarch64 under qemu).
std::vector<std::uint8_t> reference_quantize(QuantType t, const std::vector<float>& x) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < x.size(); i += 32) {
    const float* b = &x[i];
    volatile float d, id, m = 0.0f;
    std::uint8_t q[32];
    if (t == QuantType::Q8_0) {
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(b[j]));
      d = amax / 127.0f;
      id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; ++j) {
        volatile float v = b[j] * id;
        q[j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(v)));
      }
    } else {
      float lo = b[0], hi = b[0], amax = 0.0f, max = 0.0f;
      for (int j = 0; j < 32; ++j) {
        lo = std::fmin(lo, b[j]);
        hi = std::fmax(hi, b[j]);
        if (amax < std::fabs(b[j])) amax = std::fabs(b[j]), max = b[j];
      }
      if (t == QuantType::Q4_0) {
        d = max / -8.0f;
      } else {
        volatile float range = hi - lo;
        d = range / 15.0f;
        m = lo;
      }
      id = d != 0.0f ? 1.0f / d : 0.0f;
      for (int j = 0; j < 32; ++j) {
        volatile float v = t == QuantType::Q4_0 ? b[j] : b[j] - m;
        volatile float p = v * id;
        volatile float s = p + (t == QuantType::Q4_0 ? 8.5f : 0.5f);
        const int n = static_cast<int>(s);
        q[j] = static_cast<std::uint8_t>(n < 15 ? n : 15);
      }
    }
    const std::uint16_t dh = edgellm::cpu::fp32_to_fp16(d), mh = edgellm::cpu::fp32_to_fp16(m);
    out.push_back(dh & 0xFF);
    out.push_back(dh >> 8);
    if (t == QuantType::Q4_1) {
      out.push_back(mh & 0xFF);
      out.push_back(mh >> 8);
    }
    if (t == QuantType::Q8_0) {
      out.insert(out.end(), q, q + 32);
    } else {
      for (int j = 0; j < 16; ++j) out.push_back(static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4)));
    }
  }
  return out;
}

// A block (found by searching normal random data) where Q4_0's trunc(x * id + 8.5) differs when x * id + 8.5 is
// computed with one FMA instead of two roundings: element 24 lands on the other side of an integer.
constexpr float kContractionSensitiveBlock[32] = {
    -0x1.48dbe2p+0f,
    0x1.026a0ep-2f,
    -0x1.9f207p-4f,
    -0x1.a72eb6p-2f,
    -0x1.1110eep-5f,
    0x1.2a3596p-2f,
    -0x1.606a44p-2f,
    0x1.c2ec08p-4f,
    0x1.8a438ep-2f,
    -0x1.279154p+0f,
    0x1.20973ep+0f,
    0x1.78ac2p-3f,
    -0x1.2ca6ep+0f,
    -0x1.94b992p-1f,
    0x1.58bf4p+0f,
    0x1.fa5e66p-5f,
    -0x1.135da4p-3f,
    0x1.7211f2p+0f,
    0x1.9824b2p-2f,
    0x1.8e0728p+0f,
    -0x1.ea935cp-2f,
    -0x1.1d9c0cp+0f,
    0x1.cfe808p+0f,
    0x1.37c908p-1f,
    0x1.a063bep+0f,
    0x1.23402cp+0f,
    0x1.69735p-4f,
    0x1.2ed42cp+1f,
    0x1.cace7ep-2f,
    0x1.235162p-1f,
    -0x1.242094p-1f,
    0x1.d79354p+0f};

int test_quantize(QuantType t) {
  int failures = 0;
  {
    const std::vector<float> x(kContractionSensitiveBlock, kContractionSensitiveBlock + 32);
    std::vector<std::uint8_t> got(edgellm::cpu::quant_block_bytes(t));
    edgellm::cpu::quantize(t, x.data(), got.data(), 1, 1);
    if (got != reference_quantize(t, x)) {
      std::printf("FAIL quantize %s: the FMA-sensitive block differs from the volatile reference\n",
                  edgellm::cpu::quant_type_name(t));
      ++failures;
    }
  }
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    auto x = edgellm_test::random_normal(64 * 32, 700 + seed);
    std::mt19937 gen(seed);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (i % 3 == 0) x[i] = static_cast<float>(static_cast<int>(gen() % 255) - 127) * 0.5f;  // exact ties
      if (i % 7 == 0) x[i] *= 1e-6f;  // small blocks: subnormal f16 scales
    }
    std::vector<std::uint8_t> got(x.size() / 32 * edgellm::cpu::quant_block_bytes(t));
    edgellm::cpu::quantize(t, x.data(), got.data(), 4, 16);
    if (got != reference_quantize(t, x)) {
      std::printf("FAIL quantize %s seed %u: differs from the volatile reference\n", edgellm::cpu::quant_type_name(t),
                  seed);
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
  for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0}) failures += test_quantize(t);
  for (SimdPath path : edgellm_test::runnable_paths()) {
    for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0}) {
      failures += test_dequantize(t, path) + test_matvec(t, path);
    }
  }
  return failures;
}
