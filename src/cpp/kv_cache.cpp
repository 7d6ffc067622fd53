#include "kv_cache.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "kv_cache_impl.h"

namespace edgellm {

std::uint16_t f32_to_f16(float value) {
  std::uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or NaN: keep NaN a (quiet) NaN
    return static_cast<std::uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x0200u | ((abs >> 13) & 0x3FFu) : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below the smallest normal f16 (2^-14): subnormal or zero
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half the smallest subnormal: 0
    // value = mantissa_with_implicit_bit * 2^(e - 150); f16 subnormal unit is 2^-24, so shift by 126 - e.
    const std::uint32_t e = abs >> 23;
    const std::uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // 14..24 here
    std::uint32_t half = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;  // may carry into the smallest normal: fine
    return static_cast<std::uint16_t>(sign | half);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits, nearest-even; a carry
  // out of the mantissa correctly bumps the exponent (and 65520 and above was handled above).
  std::uint32_t h = ((abs - 0x38000000u) >> 13);
  const std::uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float f16_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exp = (bits >> 10) & 0x1Fu;
  const std::uint32_t mant = bits & 0x3FFu;
  std::uint32_t out;
  if (exp == 0x1F) {
    out = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    out = sign | ((exp + 112u) << 23) | (mant << 13);
  } else {
    // zero or subnormal: mant * 2^-24, exact in float32
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::uint32_t vb;
    std::memcpy(&vb, &v, sizeof vb);
    out = sign | vb;
  }
  float f;
  std::memcpy(&f, &out, sizeof f);
  return f;
}

namespace kv::scalar {
void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
}  // namespace kv::scalar

namespace {

void require_supported(SimdPath path) {
  if (!simd_path_supported(path)) {
    throw std::invalid_argument(std::string("simd path '") + simd_path_name(path) +
                                "' is not supported on this build and CPU");
  }
}

}  // namespace

#if defined(EDGELLM_HAVE_AVX2)
#define EDGELLM_CASE_AVX2(call) \
  case SimdPath::Avx2: return kv::avx2::call;
#else
#define EDGELLM_CASE_AVX2(call)
#endif
#if defined(EDGELLM_HAVE_NEON)
#define EDGELLM_CASE_NEON(call) \
  case SimdPath::Neon: return kv::neon::call;
#else
#define EDGELLM_CASE_NEON(call)
#endif
#define EDGELLM_DISPATCH(path, call) \
  require_supported(path);           \
  switch (path) {                    \
    EDGELLM_CASE_AVX2(call)          \
    EDGELLM_CASE_NEON(call)          \
    default: return kv::scalar::call; \
  }

void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n, SimdPath path) {
  EDGELLM_DISPATCH(path, f32_to_f16_row(src, dst, n))
}

void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n, SimdPath path) {
  EDGELLM_DISPATCH(path, f16_to_f32_row(src, dst, n))
}

KvCache::KvCache(std::size_t n_layers, std::size_t n_kv_heads, std::size_t max_seq, std::size_t head_dim,
                 KvDType dtype, SimdPath path)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), max_seq_(max_seq), head_dim_(head_dim), dtype_(dtype),
      path_(path) {
  require_supported(path);
  if (n_layers == 0 || n_kv_heads == 0 || max_seq == 0 || head_dim == 0) {
    throw std::invalid_argument("kv cache: n_layers, n_kv_heads, max_seq and head_dim must all be > 0");
  }
  // Total elements = n_layers * 2 * n_kv_heads * max_seq * head_dim, checked for overflow.
  std::size_t elements = 2;
  for (std::size_t f : {n_layers, n_kv_heads, max_seq, head_dim}) {
    if (elements > std::numeric_limits<std::size_t>::max() / f) {
      throw std::invalid_argument("kv cache: size overflows");
    }
    elements *= f;
  }
  if (elements > std::numeric_limits<std::size_t>::max() / element_bytes()) {
    throw std::invalid_argument("kv cache: size overflows");
  }
  lengths_.assign(n_layers, 0);
  storage_.resize(elements * element_bytes());  // std::bad_alloc (MemoryError) if it cannot be had
}

void KvCache::check_layer(std::size_t layer) const {
  if (layer >= n_layers_) {
    throw std::out_of_range("kv cache: layer " + std::to_string(layer) + " is out of range [0, " +
                            std::to_string(n_layers_) + ")");
  }
}

std::size_t KvCache::length(std::size_t layer) const {
  check_layer(layer);
  return lengths_[layer];
}

std::size_t KvCache::layer_offset(std::size_t layer, bool value) const {
  const std::size_t per_tensor = n_kv_heads_ * max_seq_ * head_dim_ * element_bytes();
  return (2 * layer + (value ? 1 : 0)) * per_tensor;
}

const void* KvCache::keys(std::size_t layer) const {
  check_layer(layer);
  return storage_.data() + layer_offset(layer, false);
}

const void* KvCache::values(std::size_t layer) const {
  check_layer(layer);
  return storage_.data() + layer_offset(layer, true);
}

void KvCache::append(std::size_t layer, const float* k, const float* v) {
  check_layer(layer);
  const std::size_t pos = lengths_[layer];
  if (pos >= max_seq_) {
    throw KvCacheFull("kv cache: layer " + std::to_string(layer) + " is full (max_seq " + std::to_string(max_seq_) +
                      "); cannot append position " + std::to_string(pos) + " (reset() or a larger cache)");
  }
  for (int which = 0; which < 2; ++which) {
    const float* src = which == 0 ? k : v;
    std::byte* base = storage_.data() + layer_offset(layer, which == 1);
    for (std::size_t h = 0; h < n_kv_heads_; ++h) {
      const std::size_t elem = (h * max_seq_ + pos) * head_dim_;
      const float* row = src + h * head_dim_;
      if (dtype_ == KvDType::F32) {
        std::memcpy(base + elem * 4, row, head_dim_ * 4);
      } else {
        f32_to_f16_row(row, reinterpret_cast<std::uint16_t*>(base) + elem, head_dim_, path_);
      }
    }
  }
  lengths_[layer] = pos + 1;
}

void KvCache::reset() noexcept {
  for (std::size_t& n : lengths_) n = 0;
}

void KvCache::read_f32(std::size_t layer, bool value, std::size_t head, std::size_t n, float* out) const {
  check_layer(layer);
  if (head >= n_kv_heads_) {
    throw std::out_of_range("kv cache: head " + std::to_string(head) + " is out of range [0, " +
                            std::to_string(n_kv_heads_) + ")");
  }
  if (n > lengths_[layer]) {
    throw std::out_of_range("kv cache: asked for " + std::to_string(n) + " positions of layer " +
                            std::to_string(layer) + ", which holds " + std::to_string(lengths_[layer]));
  }
  const std::byte* base = storage_.data() + layer_offset(layer, value);
  const std::size_t elem = head * max_seq_ * head_dim_;
  if (dtype_ == KvDType::F32) {
    std::memcpy(out, base + elem * 4, n * head_dim_ * 4);
  } else {
    f16_to_f32_row(reinterpret_cast<const std::uint16_t*>(base) + elem, out, n * head_dim_, path_);
  }
}

void KvCache::read_keys_f32(std::size_t layer, std::size_t head, std::size_t n, float* out) const {
  read_f32(layer, false, head, n, out);
}

void KvCache::read_values_f32(std::size_t layer, std::size_t head, std::size_t n, float* out) const {
  read_f32(layer, true, head, n, out);
}

}  // namespace edgellm
