// Dispatcher and table builders of ternary.h.
#include "ternary.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "quant_parallel.h"
#include "ternary_impl.h"

namespace edgellm::cpu {
namespace {

constexpr std::size_t kRowGranule = 16;  // the SIMD LUT paths work on 16 rows at a time

void require_supported(SimdPath path) {
  if (!simd_path_supported(path)) {
    throw std::invalid_argument(std::string("simd path '") + simd_path_name(path) +
                                "' is not supported on this build and CPU");
  }
}

std::vector<float> padded_x(const float* x, std::size_t k) {
  std::vector<float> xp(ternary_padded_k(k), 0.0f);
  std::memcpy(xp.data(), x, k * sizeof(float));
  return xp;
}

// The 16 entries (q0 - 1) x0 + (q1 - 1) x1 of one pair; code 3 (invalid) entries are 0.
void pair_table(float x0, float x1, float out[16]) {
  for (int n = 0; n < 16; ++n) {
    const int q0 = n & 3, q1 = n >> 2;
    out[n] = (q0 == 3 || q1 == 3) ? 0.0f : static_cast<float>(q0 - 1) * x0 + static_cast<float>(q1 - 1) * x1;
  }
}

}  // namespace

TernaryMethod parse_ternary_method(const char* name) {
  const std::string s(name);
  if (s == "decode") return TernaryMethod::Decode;
  if (s == "lut") return TernaryMethod::LutF32;
  if (s == "lut_int8") return TernaryMethod::LutInt8;
  throw std::invalid_argument("ternary method '" + s + "' is unknown; choose 'lut', 'lut_int8' or 'decode'");
}

std::size_t ternary_padded_k(std::size_t k) {
  if (k == 0) throw std::invalid_argument("ternary: k must be >= 1");
  return (k + kTernaryKAlign - 1) / kTernaryKAlign * kTernaryKAlign;
}

TernaryLutF32 build_ternary_lut_f32(const float* x, std::size_t k) {
  const std::vector<float> xp = padded_x(x, k);
  TernaryLutF32 lut;
  lut.kp = xp.size();
  lut.table.resize(lut.kp / 2 * 16);
  for (std::size_t p = 0; p < lut.kp / 2; ++p) pair_table(xp[2 * p], xp[2 * p + 1], &lut.table[16 * p]);
  return lut;
}

TernaryLutInt8 build_ternary_lut_int8(const float* x, std::size_t k) {
  const std::vector<float> xp = padded_x(x, k);
  TernaryLutInt8 lut;
  lut.kp = xp.size();
  lut.table.resize(lut.kp / 2 * 16);
  lut.block_scale.resize(lut.kp / kTernaryLutBlock);
  constexpr std::size_t kPairs = kTernaryLutBlock / 2;
  for (std::size_t b = 0; b < lut.block_scale.size(); ++b) {
    // The largest |entry| of a pair's table is |x0| + |x1|: scale so that the block's largest maps to 127.
    float amax = 0.0f;
    for (std::size_t p = b * kPairs; p < (b + 1) * kPairs; ++p) {
      amax = std::fmax(amax, std::fabs(xp[2 * p]) + std::fabs(xp[2 * p + 1]));
    }
    const float s = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    lut.block_scale[b] = static_cast<double>(s);
    for (std::size_t p = b * kPairs; p < (b + 1) * kPairs; ++p) {
      float t[16];
      pair_table(xp[2 * p], xp[2 * p + 1], t);
      for (int n = 0; n < 16; ++n) {
        const float v = std::round(t[n] * inv);
        lut.table[16 * p + n] = static_cast<std::int8_t>(std::fmax(-127.0f, std::fmin(127.0f, v)));
      }
    }
  }
  return lut;
}

void ternary_matvec_lut_f32(const std::uint8_t* packed, const float* scale, const TernaryLutF32& lut, float* y,
                            std::size_t m, int n_threads) {
  parallel_rows(m, n_threads, kRowGranule, [&](std::size_t begin, std::size_t end) {
    scalar::ternary_lut_f32_rows(packed, scale, lut.table.data(), y, lut.kp, begin, end);
  });
}

void ternary_matvec_lut_int8(const std::uint8_t* packed, const float* scale, const TernaryLutInt8& lut, float* y,
                             std::size_t m, SimdPath path, int n_threads) {
  require_supported(path);
  auto rows = scalar::ternary_lut_int8_rows;
#if defined(EDGELLM_HAVE_AVX2)
  if (path == SimdPath::Avx2) rows = avx2::ternary_lut_int8_rows;
#endif
#if defined(EDGELLM_HAVE_NEON)
  if (path == SimdPath::Neon) rows = neon::ternary_lut_int8_rows;
#endif
  parallel_rows(m, n_threads, kRowGranule, [&](std::size_t begin, std::size_t end) {
    rows(packed, scale, lut.table.data(), lut.block_scale.data(), y, lut.kp, begin, end);
  });
}

void ternary_matvec(const std::uint8_t* packed, const float* scale, const float* x, float* y, std::size_t m,
                    std::size_t k, TernaryMethod method, SimdPath path, int n_threads) {
  require_supported(path);
  switch (method) {
    case TernaryMethod::LutF32:
      ternary_matvec_lut_f32(packed, scale, build_ternary_lut_f32(x, k), y, m, n_threads);
      return;
    case TernaryMethod::LutInt8:
      ternary_matvec_lut_int8(packed, scale, build_ternary_lut_int8(x, k), y, m, path, n_threads);
      return;
    case TernaryMethod::Decode: {
      const std::vector<float> xp = padded_x(x, k);
      auto rows = scalar::ternary_decode_rows;
#if defined(EDGELLM_HAVE_AVX2)
      if (path == SimdPath::Avx2) rows = avx2::ternary_decode_rows;
#endif
#if defined(EDGELLM_HAVE_NEON)
      if (path == SimdPath::Neon) rows = neon::ternary_decode_rows;
#endif
      parallel_rows(m, n_threads, kRowGranule, [&](std::size_t begin, std::size_t end) {
        rows(packed, scale, xp.data(), y, xp.size(), begin, end);
      });
      return;
    }
  }
}

}  // namespace edgellm::cpu
