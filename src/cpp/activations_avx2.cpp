// AVX2+FMA path of activations.h: 8-wide lanes, scalar tails (which call the scalar path's formulas).
#include <cmath>
#include <cstdint>

#include "activations_impl.h"
#include "simd/avx2.h"

namespace edgellm::cpu::avx2 {

using edgellm::avx2::exp_ps;
using edgellm::avx2::hmax;
using edgellm::avx2::hsum;

namespace {

float sum_f32(const float* x, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
    acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += x[i];
  return s;
}

// x / (1 + exp(-x)); exp_ps clamps its argument, so a very negative x gives a tiny, not a NaN, result.
inline __m256 silu_ps(__m256 x) {
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

}  // namespace

void layernorm_f32(const float* x, const float* weight, const float* bias, float* y, std::size_t rows,
                   std::size_t n, float eps) {
  for (std::size_t r = 0; r < rows; ++r, x += n, y += n) {
    const float mean = sum_f32(x, n) / static_cast<float>(n);
    const __m256 vmean = _mm256_set1_ps(mean);
    __m256 acc = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vmean);
      acc = _mm256_fmadd_ps(d, d, acc);
    }
    float sum_sq = hsum(acc);
    for (; i < n; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
    const float inv_std = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    const __m256 vinv = _mm256_set1_ps(inv_std);
    for (i = 0; i + 8 <= n; i += 8) {
      const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vinv);
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(weight + i), _mm256_loadu_ps(bias + i)));
    }
    for (; i < n; ++i) y[i] = (x[i] - mean) * inv_std * weight[i] + bias[i];
  }
}

void silu_f32(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu_ps(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void swiglu_f32(const float* gate, const float* up, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu_ps(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rope_normal_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_dup,
                     const float* sin_alt) {
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    std::size_t i = 0;
    for (; i + 8 <= head_dim; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      const __m256 swapped = _mm256_permute_ps(v, 0xB1);  // (x1, x0, x3, x2, ...)
      _mm256_storeu_ps(x + i, _mm256_fmadd_ps(swapped, _mm256_loadu_ps(sin_alt + i),
                                              _mm256_mul_ps(v, _mm256_loadu_ps(cos_dup + i))));
    }
    for (; i < head_dim; i += 2) {
      const float x0 = x[i], x1 = x[i + 1];
      x[i] = x0 * cos_dup[i] + x1 * sin_alt[i];
      x[i + 1] = x1 * cos_dup[i + 1] + x0 * sin_alt[i + 1];
    }
  }
}

void rope_neox_f32(float* x, std::size_t n_heads, std::size_t head_dim, const float* cos_half,
                   const float* sin_half) {
  const std::size_t half = head_dim / 2;
  for (std::size_t h = 0; h < n_heads; ++h, x += head_dim) {
    std::size_t i = 0;
    for (; i + 8 <= half; i += 8) {
      const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + half);
      const __m256 c = _mm256_loadu_ps(cos_half + i), s = _mm256_loadu_ps(sin_half + i);
      _mm256_storeu_ps(x + i, _mm256_fnmadd_ps(b, s, _mm256_mul_ps(a, c)));
      _mm256_storeu_ps(x + i + half, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
    }
    for (; i < half; ++i) {
      const float x0 = x[i], x1 = x[i + half];
      x[i] = x0 * cos_half[i] - x1 * sin_half[i];
      x[i + half] = x0 * sin_half[i] + x1 * cos_half[i];
    }
  }
}

std::size_t argmax_f32(const float* x, std::size_t n) {
  // Pass 1: the maximum and whether any NaN is present (unordered compare of x with itself).
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  __m256 nan_seen = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan_seen = _mm256_or_ps(nan_seen, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    vmax = _mm256_max_ps(vmax, v);
  }
  bool has_nan = _mm256_movemask_ps(nan_seen) != 0;
  float m = hmax(vmax);
  for (; i < n; ++i) {
    if (std::isnan(x[i])) has_nan = true;
    else if (x[i] > m) m = x[i];
  }
  // Pass 2: the first index holding it (or the first NaN).
  if (has_nan) {
    for (i = 0; i < n; ++i) {
      if (std::isnan(x[i])) return i;
    }
  }
  const __m256 target = _mm256_set1_ps(m);
  for (i = 0; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), target, _CMP_EQ_OQ));
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
  for (; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;  // unreachable: m is one of the elements
}

}  // namespace edgellm::cpu::avx2
