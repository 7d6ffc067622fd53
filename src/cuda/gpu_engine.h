// GPU decode engine: one token of a Llama/Qwen2-style decoder per step, the whole step replayed from one CUDA graph
// (of 5 L + 2 kernels, below; or, with GpuStepMode::Persistent, of one persistent kernel: gpu_persistent.h).
//
// Same model description as the CPU engine (src/cpp/engine.h: cpu::ModelView, GGUF tensors as stored) and the same
// math; the weights are copied once to the device in the file's quantization (Q4_0, Q4_1, Q8_0) and multiplied
// with Q8_1-quantized activations using integer dot products (dp4a), like llama.cpp's CUDA "mmvq" path and like our
// CPU engine (which mirrors ggml's CPU path): d_w * d_x * sum(q_w * q_x) (+ m_w * s_x for Q4_1).
// fp16 weight path: a matrix the loader hands over as f32 (the file's F16, BF16, F32, or a type without a quantized
// GEMV, dequantized at load) is stored as fp16 (converted on the device, rounded to nearest; exact for F16 files,
// a value beyond fp16's range is an error naming the tensor) and multiplied with f32 activations (fp32 FMAs), as
// the CPU engine's float matvec does; so is every other matrix of the same GEMV (q/k/v, gate/up), dequantized.
// Option float_activations: quantized weights multiplied with f32 activations too (per 8 weights of a block
// d * sum(q a) (+ m * sum a)), no Q8_1 rounding of the activations (more exact; no longer ggml's arithmetic).
//
// One step (token t at position p; graph nodes in order, L = n_layer):
//   embed        x = dequant(tok_embd[t]);  seq_len = p + 1                                   1 kernel
//   per layer    qkv   : h = rmsnorm(x) * attn_norm -> Q8_1 (in shared memory, per block);
//                        q, k, v = W h (+ bias); RoPE(q, k) at p; q -> fp16 buffer, k, v -> fp16 cache at p  1 kernel
//                attn  : o = fa2_decode(q, K[:p+1], V[:p+1]) (GQA, split-KV, fp16 cache)                     1 kernel
//                o-proj: x += Wo Q8_1(o)                                                                      1 kernel
//                ffn-up: h = rmsnorm(x) * ffn_norm -> Q8_1; a = silu(Wgate h) * (Wup h)                       1 kernel
//                down  : x += Wdown Q8_1(a)                                                                   1 kernel
//   head         logits = Wout Q8_1(rmsnorm(x) * output_norm); its blocks fold in the argmax: the last one writes
//                token = first argmax(logits), p += 1 (device memory) and the token into pinned host memory
//                (mapped: no copy node)                                                        1 kernel
// = 5 L + 2 kernels. On sm_90+ the GEMVs use programmatic dependent launch: each one's blocks start while the
// previous kernel finishes and load their first weights into registers before waiting for its results. The token
// id and position live in device memory: a greedy step whose input is the previous step's argmax needs no
// host-to-device copy at all; a prompt token or a sampled token costs one 4-byte copy.
// The only synchronisation per step is the wait for the 4-byte token id.
// A prompt runs in batched prefill steps of 8 tokens (prefill()), each its own graph per length bucket.
//
// Attention is FlashAttention-2 decode (fa2_decode.h), whose split count is fixed per captured graph from a length
// hint: one graph per length bucket (256, 1024, 4096, ... up to max_seq keys), captured on first use.
//
// Differences from the CPU engine (so the logits agree to a tolerance, not bit for bit): sums run in a different
// order (warp shuffles), RMSNorm sums squares in float, RoPE angles are pos * inv_freq[i] (sincosf) rather than
// ggml's float recurrence, the attention's softmax weights stay fp32 (the CPU rounds them to fp16, as ggml's CPU
// path does) and its output is rounded to fp16 before the output projection quantizes it (the persistent step keeps
// it f32).
//
// Limits: weights Q4_0/Q4_1/Q8_0 or fp16 (above; the persistent step runs quantized weights only), head_dim in
// {64, 80, 96, 128, 256}, every matrix's cols a multiple of 32, n_embd and n_ff <= 16384.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "device_buffer.h"
#include "engine.h"  // cpu::ModelView, cpu::ContextFull (src/cpp)
#include "fa2_decode.h"
#include "stream.h"

namespace edgellm::cuda {

namespace gemv_q8 {
struct GemvParams;  // gemv_q8.cuh (device code: not included here)
}
struct StepGemvs;

// One quantized matrix on the device: rows of ggml blocks.
struct DeviceMatrix {
  const std::uint8_t* data = nullptr;
  int type = 0;          // ggml type id: 1 F16 (the fp16 weight path), 2 Q4_0, 3 Q4_1, 8 Q8_0
  int rows = 0;
  int cols = 0;
  int row_bytes = 0;
};

struct DeviceLayer {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* bias[3] = {nullptr, nullptr, nullptr};  // q, k, v (Qwen2); nullptr = none
  DeviceMatrix wq, wk, wv, wo, gate, up, down;
};

// How a step runs: Graph = one CUDA graph of 5 L + 2 kernels per length bucket (above; the default: the faster
// one); Persistent = the same stages in one cooperative kernel with grid barriers between them (gpu_persistent.h;
// measured about half as fast on the H200, docs/engine.md). prefill() runs the same batched kernels in both.
enum class GpuStepMode { Graph, Persistent };

class GpuEngine {
 public:
  // Validates (std::invalid_argument naming the tensor) and copies every weight to the current device.
  // programmatic_launch: launch the graph's GEMVs with programmatic dependent launch (sm_90+; ignored below), so
  // that each starts, and prefetches its weights, while the previous kernel finishes.
  // mode Persistent where it cannot run (n_head / n_head_kv > 8, no cooperative launch, a block does not fit on
  // an SM, fp16 weights, float_activations) is a std::invalid_argument naming the reason.
  // float_activations: quantized weights multiplied with f32 activations instead of Q8_1-quantized ones (above).
  explicit GpuEngine(const cpu::ModelView& model, bool programmatic_launch = true,
                     GpuStepMode mode = GpuStepMode::Graph, bool float_activations = false);
  ~GpuEngine();
  GpuEngine(const GpuEngine&) = delete;
  GpuEngine& operator=(const GpuEngine&) = delete;

  // One token at position n_past(); fills logits (n_vocab floats, host) when given; returns the argmax (the LM
  // head always runs). cpu::ContextFull when the cache is full, std::out_of_range for a bad id: nothing changed.
  // std::logic_error while submitted steps are not collected.
  long long step(long long token, float* logits);
  // Pipelined decode (greedy streams): submit() enqueues one step at position n_past() (n_past() + 1 at once)
  // and returns without waiting; collect() waits for the oldest submitted step and returns its argmax. So the
  // next step runs on the GPU while the host reads a token. token >= 0: that id; kTokenOnDevice: the argmax of
  // the step before, as the device holds it (no copy; std::logic_error when there is none: before the first step,
  // after truncate()). At most kMaxInFlight steps submitted and not collected (std::logic_error beyond that, or
  // collecting with none). Errors of a submit as for step(), nothing enqueued.
  static constexpr long long kTokenOnDevice = -1;
  static constexpr int kMaxInFlight = 4;
  void submit(long long token);
  long long collect();
  int in_flight() const { return static_cast<int>(submitted_ - collected_); }
  // The prompt: batched steps of 8 tokens (one graph per length bucket: the same kernels with every weight load
  // serving 8 tokens, the attention causal over the shared cache, no LM head) while more than 8 remain, then
  // decode steps; returns the last token's argmax (logits of the last).
  long long prefill(const long long* tokens, std::size_t n, float* logits);
  // Also discards steps submitted and not collected (waiting for them first).
  void truncate(std::size_t n);
  // For tuning, from the next step on (stage_trace() returns the last step's values, zeros before the first
  // step, empty when not enabled). Persistent step: block 0 records the global timer (ns) at the start and at
  // arrival/departure of each grid barrier: 1 + 2 (5 L + 2) values. Graph step: 4 values per GEMV launch (4 L + 1:
  // per layer qkv, o-proj, gate/up, down, then the LM head): its first block's start, its first block past the
  // programmatic wait, its last block past the wait, its last block's end.
  void enable_stage_trace();
  std::vector<unsigned long long> stage_trace() const;

  std::size_t n_past() const { return n_past_; }
  const cpu::EngineConfig& config() const { return config_; }
  std::size_t weight_bytes_per_token() const { return weight_bytes_per_token_; }
  std::size_t device_bytes() const;  // everything this engine allocated on the device
  // Kernels of the last step: 1 (persistent), or 5 per layer + 2, plus one per layer where the bucket's attention
  // runs its split-merge kernel (before the first step: without those).
  int kernels_per_step() const {
    return persistent_ ? 1 : 5 * static_cast<int>(config_.n_layer) + 2 + last_merge_kernels_;
  }
  bool persistent() const { return persistent_; }
  // Matrices stored and multiplied as fp16 (the tied embedding/LM head counted once).
  int fp16_matrices() const { return fp16_matrices_; }
  bool float_activations() const { return float_activations_; }
  // Graph nodes of the graph that ran the last step (its kernels and memsets; in persistent mode the token copy
  // follows it); 0 before the first step.
  std::size_t graph_nodes() const { return last_graph_nodes_; }
  // Host<->device bytes moved by the last step (token in, token out, logits when asked for).
  std::size_t last_step_h2d_bytes() const { return last_h2d_bytes_; }
  std::size_t last_step_d2h_bytes() const { return last_d2h_bytes_; }
  std::uintptr_t stream_handle() const { return stream_.handle(); }
  bool programmatic_launch() const { return programmatic_; }

 private:
  struct Graph;
  struct Bucket;
  Bucket& bucket_for(std::size_t length);
  void enqueue_step(Bucket& b, cudaStream_t stream);
  void enqueue_prefill(Bucket& b, cudaStream_t stream);
  void check_persistent() const;  // std::invalid_argument naming why the persistent step cannot run here
  void setup_persistent();
  std::vector<std::unique_ptr<Fa2DecodeOp>>& attention_ops(Bucket& b, bool prefill);
  void enqueue_persistent_step(cudaStream_t stream);
  template <class Enqueue>
  void capture(Graph& g, Enqueue enqueue);
  std::size_t stage_trace_entries() const;
  // The GEMV parameters of layer l (o_in: the attention output the o-projection reads) and of the LM head.
  StepGemvs layer_gemvs(std::size_t l, const void* o_in) const;
  gemv_q8::GemvParams head_gemv() const;
  void check_tokens(const long long* tokens, std::size_t n) const;

  cpu::EngineConfig config_;
  Stream stream_;
  int multiprocessors_ = 0;
  bool programmatic_ = false;
  std::size_t weight_bytes_per_token_ = 0;
  std::unique_ptr<DeviceBuffer> weights_;  // every matrix, norm, bias and the RoPE table, 256-byte aligned pieces
  DeviceMatrix tok_embd_, output_;
  const float* output_norm_ = nullptr;
  const float* inv_freq_ = nullptr;        // [n_rot / 2]: base^(-2i/n_rot) / rope_freqs[i]
  std::vector<DeviceLayer> layers_;
  std::unique_ptr<DeviceBuffer> k_cache_, v_cache_;  // fp16 [L][G][max_seq][D]
  // Per token t < kPrefillTokens (a decode step uses t = 0): residual f32 [T][E]; q, o fp16 [T][H*D]; act f32
  // [T][F]; logits f32 [V].
  std::unique_ptr<DeviceBuffer> x_, q_, o_, act_, logits_;
  std::unique_ptr<DeviceBuffer> state_;       // int32 {token, position, seq_len, argmax}
  std::unique_ptr<DeviceBuffer> prefill_io_;  // int32 batched prefill: tokens [T], {-, position, -, -}, lens [T]
  struct PinnedFree {
    void operator()(int* p) const { cudaFreeHost(p); }
  };
  // Pinned: a prefill chunk's tokens and position.
  std::unique_ptr<int, PinnedFree> host_io_;
  // Steps in flight (submit/collect): step i uses slot i % kMaxInFlight of step_io_ (pinned {token, position} in)
  // and of step_done_ (recorded after the step); its token lands in slot step_token_slot_[i % kMaxInFlight]: the
  // graph step's LM head writes it into the slot of its position (position % kMaxInFlight: the positions of the
  // steps in flight are consecutive, truncate() drains them), the persistent step's copy into slot i's.
  struct EventFree {
    void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
  };
  std::unique_ptr<int, PinnedFree> step_io_;
  std::vector<std::unique_ptr<CUevent_st, EventFree>> step_done_;
  std::size_t submitted_ = 0, collected_ = 0;
  bool float_activations_ = false;
  // Graph step: the LM head's blocks fold in the argmax (StoreArgmax; head_argmax_ {key, arrivals}, zero between
  // steps) and write the token into step_io_'s slot of its position through the mapped pinned memory
  // (step_io_device_: its device address), so that a step is one graph launch: no argmax kernel, no token copy.
  std::unique_ptr<DeviceBuffer> head_argmax_;
  int* step_io_device_ = nullptr;
  std::array<int, kMaxInFlight> step_token_slot_{};  // per submit slot: the step_io_ slot its token lands in
  bool batched_prefill_ = false;
  int fp16_matrices_ = 0;  // the 8-token GEMVs' shared memory fits this device
  std::vector<std::unique_ptr<Bucket>> buckets_;
  // Persistent mode: every GEMV's parameters on the device, the f32 attention output, the attention's split
  // partials, the barrier/attention counters and the argmax slot (cleared before each step), and its one graph.
  bool persistent_ = false;
  int layer_type_ = 0;  // ggml type shared by every layer matrix, 0 when mixed
  std::unique_ptr<DeviceBuffer> gemv_dev_, o32_, attn_partial_, sync_, trace_;
  int attn_max_chunks_ = 0;
  std::size_t persistent_smem_ = 0;
  std::unique_ptr<Graph> persistent_graph_;
  std::size_t n_past_ = 0;
  // The device's {token, position} are {the last step's argmax, n_past_} (false at first and after truncate()): a
  // step given that token (last_argmax_ once collected, -1 while not) then copies nothing to the device.
  bool device_state_current_ = false;
  long long last_argmax_ = -1;
  void drain();  // waits for the steps in flight and discards them
  std::size_t last_graph_nodes_ = 0, last_h2d_bytes_ = 0, last_d2h_bytes_ = 0;
  int last_merge_kernels_ = 0;  // the last graph step's attention merge kernels (kernels_per_step)
};

}  // namespace edgellm::cuda
