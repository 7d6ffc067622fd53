// CPU decode engine: one token of a Llama/Qwen2-style decoder per call, the whole step in C++.
//
// Math per token (position p, hidden size E, H query heads, G kv heads, head dim D, FFN size F, vocab V):
//   x = embed[token]                                                     (Q8_0/Q4_x rows dequantized, F32 copied)
//   per layer: h = rmsnorm(x) * attn_norm
//              q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)               (quantized matvecs, Q8 activations)
//              rope(q), rope(k) at p (angle of pair i: p * base^(-2i/n_rot) / rope_freqs[i]; Normal = interleaved pairs for GGUF `llama`, NeoX = half split for qwen2)
//              K[p], V[p] = f16(k), f16(v)                                (cache values rounded to binary16)
//              per head i (kv head i / (H/G)): s_t = f16(q_i) . K_t * 1/sqrt(D) for t <= p; a = softmax(s);
//                                                 o_i = sum_t f16(a_t) V_t
//              x += Wo o;  h = rmsnorm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * (Wup h))
//   logits = Wout (rmsnorm(x) * output_norm)
//
// Arithmetic mirrors llama.cpp's CPU path (ggml, AVX2/NEON builds) where it changes results: activations of a
// quantized matvec are quantized like ggml's SIMD quantize_row_q8_0/q8_1 (d = amax/127 stored as f16,
// q = round-to-nearest-even(x * 127/amax), Q8_1's s = f16(d * sum q)), each block's integer dot product is exact
// and scaled by d_w * d_x (Q4_1 adds m_w * s_x); RMSNorm sums squares in double; RoPE angles are built by the
// same float recurrence as ggml_rope_cache_init (theta_{i+1} = theta_i * base^(-2/n_rot)); the KV cache holds
// binary16 values (llama.cpp's default f16 cache); q and the softmax weights are rounded to binary16 before
// their dot products (ggml converts the f32 operand of an f16 mul_mat to f16). exp/silu use the C library
// (ggml's SIMD exp differs by ~1 ulp). The cache is stored as float32 holding binary16-rounded values (exact
// products, SIMD dot products of the existing kernels), V transposed [G, D, max_seq] like llama.cpp's non-flash
// attention.
//
// Weights (types: F32 = 0, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, ggml ids) are NOT copied: the engine keeps pointers
// into caller-owned memory (the binding keeps the arrays alive). A quantized matrix [rows, cols] is rows * cols/32
// blocks, row after row; an F32 matrix is row-major. Norm weights and biases are F32.
//
// Threads: a pool of n_threads - 1 workers owned by the engine (none for n_threads = 1), spinning briefly
// between jobs, then yielding, then sleeping on a condition variable. Matvec rows (chunks of >= 32 rows) and
// attention (token, head) pairs are chunks; each thread, the caller included, claims the chunks of its own
// contiguous range, then what is left of the others' (a chunk's result never depends on the thread); small
// vector ops run on the calling thread. No global state: two engines are independent. One engine must not be
// used from two threads at once (the Python binding refuses a second concurrent call).
//
// Limits: head_dim even, n_rot <= head_dim and even, H a multiple of G, every matrix's cols a multiple of 32,
// max_seq >= 1. Positions past max_seq are refused (std::length_error) before anything is modified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "simd/simd.h"

namespace edgellm::cpu {

enum class WeightType : int { F32 = 0, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };

struct WeightView {
  WeightType type = WeightType::F32;
  const void* data = nullptr;
  std::size_t rows = 0;
  std::size_t cols = 0;
};

struct LayerView {
  const float* attn_norm = nullptr;
  WeightView wq, wk, wv, wo;
  const float* bq = nullptr;  // optional biases (Qwen2); nullptr = none
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* ffn_norm = nullptr;
  WeightView gate, up, down;
};

struct EngineConfig {
  std::size_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_vocab = 0;
  std::size_t n_rot = 0;      // rotated dims per head (llama.cpp's rope.dimension_count)
  float rope_base = 10000.0f;
  bool rope_neox = false;     // false: Normal (pairs 2i, 2i+1); true: NeoX (pairs i, i + n_rot/2)
  float rms_eps = 1e-5f;
  std::size_t max_seq = 0;
};

struct ModelView {
  EngineConfig config;
  WeightView tok_embd;        // [n_vocab, n_embd]
  std::vector<LayerView> layers;
  const float* rope_freqs = nullptr; // optional [n_rot/2] frequency divisors (Llama-3.x rope_freqs tensor)
  const float* output_norm = nullptr;
  WeightView output;          // [n_vocab, n_embd] (the embedding itself when tied)
};

class SpinPool;

// Thrown by step() when every cache position is used.
class ContextFull : public std::length_error {
 public:
  using std::length_error::length_error;
};

// Both engines' input check: n tokens at position n_past must fit in max_seq (ContextFull otherwise) and every id
// must be in [0, n_vocab) (std::out_of_range naming it). Header-only: the CUDA library uses it too.
inline void check_decode_tokens(const EngineConfig& c, std::size_t n_past, const long long* tokens, std::size_t n) {
  if (n > c.max_seq - n_past) {
    throw ContextFull("context full: " + std::to_string(n) + " more token(s) after " + std::to_string(n_past) +
                      " do not fit in the KV cache of " + std::to_string(c.max_seq) +
                      " positions (create the model with a larger n_ctx, or reset)");
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || static_cast<std::size_t>(tokens[i]) >= c.n_vocab) {
      throw std::out_of_range("token id " + std::to_string(tokens[i]) + " (index " + std::to_string(i) +
                              ") is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
  }
}

class CpuEngine {
 public:
  // Validates every shape and type (std::invalid_argument naming the tensor) and allocates the cache.
  CpuEngine(const ModelView& model, int n_threads, SimdPath path);
  ~CpuEngine();
  CpuEngine(const CpuEngine&) = delete;
  CpuEngine& operator=(const CpuEngine&) = delete;

  // Runs one token at position n_past() and appends its K/V. When logits != nullptr (n_vocab floats) or
  // want_argmax, the LM head runs; returns argmax of the logits (first maximum), or -1 when the head was
  // skipped. Throws ContextFull when n_past() == max_seq and std::out_of_range for a bad token id; in both
  // cases nothing changed.
  long long step(long long token, float* logits, bool want_argmax);

  // Runs n tokens at positions n_past() .. n_past() + n - 1 in batches of up to kMaxBatch (each weight row is
  // read once per batch and multiplied with every token's activations: same per-token arithmetic as step(),
  // far fewer bytes). The LM head runs for the last token only; returns its argmax and fills logits when given.
  // Validates everything (capacity: ContextFull; ids: std::out_of_range) before running anything.
  long long prefill(const long long* tokens, std::size_t n, float* logits);

  static constexpr std::size_t kMaxBatch = 32;

  std::size_t n_past() const { return n_past_; }
  // Forget positions >= n (n <= n_past): the next step writes at position n.
  void truncate(std::size_t n);
  const EngineConfig& config() const { return model_.config; }
  int n_threads() const { return n_threads_; }
  SimdPath simd_path() const { return path_; }
  // Bytes of weights read per token (all matrices incl. the LM head, one embedding row).
  std::size_t weight_bytes_per_token() const;

 private:
  long long forward(const long long* tokens, std::size_t n_tok, float* logits, bool want_head);
  void check_tokens(const long long* tokens, std::size_t n) const;
  // y_s[t * rows_s + r] = W_s[r] . activation t, for up to 3 matrices sharing the activations of n_tok tokens.
  void matvec_job(const WeightView* const* w, float* const* y, std::size_t n_seg, std::size_t n_tok);
  // Rows [i0, i1) of one matrix for n_tok tokens (the work of a matvec chunk).
  void matvec_rows(const WeightView& w, float* y, std::size_t i0, std::size_t i1, std::size_t n_tok) const;
  // Rows per matvec chunk for a job of `total` rows.
  std::size_t chunk_rows(std::size_t total) const;
  // gate/up matvecs, silu(gate) * up and its quantization as one job; leaves the result as the activations.
  void ffn_gate_up_job(const LayerView& L, std::size_t n_tok);
  // Quantizes n_tok rows of n floats (row stride n) into act_q_/act_s_ (row strides n/32 blocks).
  void quantize_act(const float* x, std::size_t n, std::size_t n_tok);
  void attention(std::size_t layer, std::size_t first_pos, std::size_t n_tok);
  void rope(float* x, std::size_t n_heads, const float* cos_t, const float* sin_t) const;

  ModelView model_;
  int n_threads_;
  SimdPath path_;
  std::unique_ptr<SpinPool> pool_;
  std::size_t n_past_ = 0;

  // Scratch for up to kMaxBatch tokens (row t of each at t * width) and the cache (float32).
  std::vector<float> x_, h_, q_, k_, v_, o_, tmp_, gate_, up_, logits_;
  std::vector<float> k_cache_, v_cache_;  // [L][G][max_seq][D] and [L][G][D][max_seq]
  std::vector<float> scores_;             // [n_threads][max_seq]: one attention row per thread at a time
  std::vector<float> rope_cos_, rope_sin_;  // [kMaxBatch][n_rot/2]
  std::vector<std::uint8_t> act_q_;       // Q8_0 blocks of the current activations
  std::vector<float> act_s_;              // per block f16(d * sum q) (Q8_1's s)
  std::vector<std::uint8_t> ffn_q_;       // ffn_gate_up_job's output blocks (swapped with act_q_/act_s_ after it)
  std::vector<float> ffn_s_;
  const float* act_f32_ = nullptr;        // the current activations in f32 (for F32 weights)
  std::size_t act_stride_ = 0;            // floats per token row of act_f32_ / blocks per token row of act_q_
};

}  // namespace edgellm::cpu
