// Key/value cache for decode-time attention.
//
// Layout: for each layer, K and V each have storage [n_kv_heads, max_seq, head_dim] (row-major), so that one
// head's keys for positions [0, n) are contiguous (what the attention dot products read). GQA: the cache holds
// n_kv_heads heads; query head h reads kv head h / (n_heads / n_kv_heads), which is the caller's business.
// Storage dtype: float32, or float16 (IEEE binary16, round-to-nearest-even conversion on append; values beyond
// the f16 range become +-inf, NaN stays NaN). Appends take float32 and convert.
//
// Positions: each layer has its own length. append(layer, k, v) writes k and v ([n_kv_heads, head_dim] each,
// float32) at position length(layer) and increments it. Appending to a full layer (length == max_seq) throws
// KvCacheFull (std::length_error) and changes nothing. reset() sets every length to 0 (storage is not cleared).
// Readers see positions [0, length(layer)).
//
// The f16 conversions run on the SIMD path given to the constructor (scalar, AVX2 = F16C, NEON = fcvtn/fcvtl);
// every path produces the same bits (kv_cache_impl.h).
//
// Memory is owned (std::vector, RAII) and allocated once in the constructor; nothing is global. Not thread-safe
// for concurrent appends to the same layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "f16.h"
#include "simd/simd.h"

namespace edgellm {

enum class KvDType { F32, F16 };

class KvCacheFull : public std::length_error {
 public:
  using std::length_error::length_error;
};

// Rows of n values on a SIMD path (std::invalid_argument if unsupported).
void f32_to_f16_row(const float* src, std::uint16_t* dst, std::size_t n, SimdPath path);
void f16_to_f32_row(const std::uint16_t* src, float* dst, std::size_t n, SimdPath path);

class KvCache {
 public:
  // Throws std::invalid_argument for a zero dimension, a size that overflows, or an unsupported SIMD path.
  KvCache(std::size_t n_layers, std::size_t n_kv_heads, std::size_t max_seq, std::size_t head_dim, KvDType dtype,
          SimdPath path = best_simd_path());

  void append(std::size_t layer, const float* k, const float* v);
  void reset() noexcept;

  std::size_t length(std::size_t layer) const;
  std::size_t n_layers() const noexcept { return n_layers_; }
  std::size_t n_kv_heads() const noexcept { return n_kv_heads_; }
  std::size_t max_seq() const noexcept { return max_seq_; }
  std::size_t head_dim() const noexcept { return head_dim_; }
  KvDType dtype() const noexcept { return dtype_; }
  SimdPath simd_path() const noexcept { return path_; }
  std::size_t element_bytes() const noexcept { return dtype_ == KvDType::F32 ? 4 : 2; }
  std::size_t total_bytes() const noexcept { return storage_.size(); }

  // Start of layer's K or V storage ([n_kv_heads, max_seq, head_dim] of dtype()); valid while the cache lives.
  const void* keys(std::size_t layer) const;
  const void* values(std::size_t layer) const;
  // Positions [0, n) of one kv head of a layer, converted to float32 into out[n * head_dim]. n <= length(layer).
  void read_keys_f32(std::size_t layer, std::size_t head, std::size_t n, float* out) const;
  void read_values_f32(std::size_t layer, std::size_t head, std::size_t n, float* out) const;

 private:
  std::size_t layer_offset(std::size_t layer, bool value) const;
  void check_layer(std::size_t layer) const;
  void read_f32(std::size_t layer, bool value, std::size_t head, std::size_t n, float* out) const;

  std::size_t n_layers_, n_kv_heads_, max_seq_, head_dim_;
  KvDType dtype_;
  SimdPath path_;
  std::vector<std::size_t> lengths_;
  std::vector<std::byte> storage_;  // [n_layers][K, V][n_kv_heads][max_seq][head_dim] elements
};

}  // namespace edgellm
