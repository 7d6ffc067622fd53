#include "kv_cache.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "kv_cache_impl.h"
#include "simd/dispatch.h"

namespace edgellm {


namespace kv::scalar {
void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}
void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
}  // namespace kv::scalar

void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, kv::, f32_to_f16_row(src, dst, n))
}

void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n, SimdPath path) {
  EDGELLM_SIMD_DISPATCH(path, kv::, f16_to_f32_row(src, dst, n))
}

KvCache::KvCache(std::size_t n_layers, std::size_t n_kv_heads, std::size_t max_seq, std::size_t head_dim,
                 KvDType dtype, SimdPath path)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), max_seq_(max_seq), head_dim_(head_dim), dtype_(dtype),
      path_(path) {
  require_simd_path(path);
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
