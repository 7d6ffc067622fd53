// FlashAttention-2 style decode attention with GQA and split-KV (flash-decoding), and the KV-cache append.
//
// Math, per sequence b and query head h (one query token):
//   out[b, h, :] = softmax(scale * q[b, h, :] . K[b, h / G, :len_b, :]^T) @ V[b, h / G, :len_b, :]
// with G = Hq / Hkv query heads sharing each KV head (GQA; G = 1 is MHA, Hkv = 1 is MQA), len_b = seq_lens[b]
// (read on the device, clamped to [0, max_seq]; a length of 0 gives a zero output), scale default 1/sqrt(D).
// Storage fp16, bf16 or fp32; the products, the online softmax and the accumulators are fp32; the output is
// rounded once to the storage type (the tensor-core variant also rounds the softmax weights p to the storage
// type before P @ V, as FlashAttention-2 does).
//
// Layouts (C-contiguous): q, out [B, Hq, D]; k_cache, v_cache [B, Hkv, max_seq, D] (or [1, ...] with kv_shared);
// seq_lens int32 [B].
// D in {64, 80, 96, 128, 256}. Pointers must be 16-byte aligned (every row is a multiple of 16 bytes).
//
// Two kernels (fa2_decode_kernel.cuh), chosen per shape by fa2_default_variant from a measured sweep:
// - SIMT (any storage type and D), described below.
// - Tensor cores (fp16/bf16, D 64 or 128, sm_80+): mma.sync m16n8k16 with the group's query heads as the 16 rows;
//   grid (num_splits, Hkv * ceil(G / 16), B), 128 threads, 96 KB (+128 B) of shared memory; each warp streams 16-key
//   tiles of K and V through its own cp.async ring in shared memory (see the kernel's comment for the ring and
//   fragment layouts). Used from 4096 keys for GQA groups of 3 or more; the default split count launches at
//   most one block per SM.
// Both end the same way (the block epilogue and the split merge below).
//
// SIMT launch: grid (num_splits, Hkv * ceil(G / HPB), B), 256 threads for HPB <= 2, 128 for HPB >= 4 (registers).
// HPB is 1 up to 2048 keys and beyond that the largest of 4, 2, 1 dividing G (measured; see
// fa2_default_heads_per_block); 8 is available.
// A block owns one KV head, up to HPB <= 8 of its query heads (each K/V row is read by ceil(G / HPB) blocks)
// and one contiguous chunk of the sequence: ceil(max_len_hint / num_splits) keys, fixed on the host so that the
// first loads go out before the device-side length arrives (the last split runs to max_seq, so a length above
// the hint is still correct). Inside a block, a group of TPK lanes (a power of two, up to 32) holds one key row
// in 16-byte vectors; warps x (32 / TPK) groups walk the chunk, 4 keys per group per step, with the next step's
// loads in flight while the current one is consumed; each group keeps its own online-softmax state (running
// max, sum, fp32 accumulator), merged across groups by shuffles and across warps through shared memory.
// With num_splits > 1 each block writes its normalised partial output and log-sum-exp to a workspace, merged
// (running maximum of the log-sum-exps) in one of two ways (Fa2Merge): in the attention kernel, by the last block
// of each (sequence, head group) to finish, found with a counter (threadfence + atomicAdd, reset by that block so
// that the op can be replayed in a CUDA graph): one launch; or by a second kernel, fa2_merge_kernel, one block per
// (sequence, query head), launched programmatically on sm_90+ so that it starts as the attention blocks end.
// num_splits <= 128; the default aims at about one block per SM, see fa2_default_num_splits; the default merge is
// the kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "device_buffer.h"
#include "launchable.h"

namespace edgellm::cuda {

enum class DType : int { F16 = 0, BF16 = 1, F32 = 2 };

struct Fa2DecodeShape {
  int batch = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_seq = 0;
  DType dtype = DType::F16;
  // Every sequence b reads the K/V of b = 0 (caches [1, Hkv, max_seq, D]): several query tokens of one sequence
  // at once, each with its own length (the GPU engine's batched prefill: causal within the chunk).
  bool kv_shared = false;
};

// Number of KV splits for a shape when the longest sequence is `max_len` keys on a device of `multiprocessors`
// SMs (measured with the merge kernel, see the definition): SIMT (heads_per_block 1..8) no split up to 4 block
// steps, beyond that the smallest power of two whose blocks cover every SM, one step per split at least; tensor
// cores (heads_per_block 16) as many as keep one block per SM, at least 2 steps per split.
int fa2_default_num_splits(const Fa2DecodeShape& shape, int max_len, int multiprocessors, int heads_per_block);

// Query heads per block (1, 2, 4 or 8) of the SIMT variant for a shape when the longest sequence is `max_len` keys.
int fa2_default_heads_per_block(const Fa2DecodeShape& shape, int max_len);

// Kernel variants: SIMT (fp32 FMAs, HPB query heads per block, any storage type and head dim) and tensor cores
// (mma.sync with the GQA group's heads as the 16 rows, K/V streamed through a cp.async shared-memory ring;
// fp16/bf16, D = 64 or 128, sm_80+).
enum class Fa2Variant : int { Auto = -1, Simt = 0, TensorCore = 1 };

// Variant for a shape when the longest sequence is `max_len` keys on a device of compute capability `cc_major`.
Fa2Variant fa2_default_variant(const Fa2DecodeShape& shape, int max_len, int cc_major);

// One kernel instantiation: entry point (null: none for this shape), threads per block, dynamic shared memory,
// variant, query heads per block, and the split-merge kernel of its storage type and head dim.
struct Fa2Kernel {
  const void* fn = nullptr;
  int threads = 0;
  int smem_bytes = 0;
  Fa2Variant variant = Fa2Variant::Simt;
  int heads_per_block = 0;
  const void* merge_fn = nullptr;
};

// Where the splits' partial outputs are merged (only with num_splits > 1): by the last block of each head group
// inside the attention kernel, or by a second kernel over all query heads (Auto: the kernel; measured, see
// checked_merge in fa2_decode.cu).
enum class Fa2Merge : int { Auto = -1, InBlock = 0, Kernel = 1 };

class Fa2DecodeOp : public Launchable {
 public:
  // Validates the shape and alignment (std::invalid_argument naming the problem) and allocates the split
  // workspace. variant Auto picks fa2_default_variant(...) (SIMT when heads_per_block is given); num_splits <= 0
  // picks fa2_default_num_splits(...); heads_per_block 0 picks fa2_default_heads_per_block(shape, max_len_hint)
  // for the SIMT kernel and must be 0 for the tensor-core one (which reports 16). A variant the shape or device
  // cannot run is std::invalid_argument. max_len_hint must be >= every length for full speed (a longer sequence is
  // still computed correctly, by the last split). merge Auto is Fa2Merge::Kernel (with more than one split).
  Fa2DecodeOp(const Fa2DecodeShape& shape, std::uintptr_t q, std::uintptr_t k_cache, std::uintptr_t v_cache,
              std::uintptr_t seq_lens, std::uintptr_t out, float scale, int max_len_hint, int num_splits,
              int heads_per_block, Fa2Variant variant = Fa2Variant::Auto, Fa2Merge merge = Fa2Merge::Auto);
  void launch(cudaStream_t stream) override;
  // Programmatic dependent launch (sm_90+; std::invalid_argument below): the kernel starts while the previous one
  // in the stream runs. Contract: that kernel (and those before it) may still be writing q, seq_lens and, of each
  // sequence b's cache, the newest row (seq_lens[b] - 1), nothing else the op reads. Before its wait the SIMT
  // kernel loads the first step's rows below the newest one (by a length read early, checked and completed
  // after the wait); the tensor-core kernel reads nothing before it. Neither triggers its dependents early (the
  // next kernel launches when this one ends: measured faster in the GPU engine than letting it start at the top),
  // except the merge kernel (Fa2Merge::Kernel), which the attention blocks let start when their key loops end.
  // Used by the GPU engine's decode step (its QKV GEMV writes q and the newest cache row).
  void set_programmatic(bool on);
  int num_splits() const { return num_splits_; }
  int heads_per_block() const { return kernel_.heads_per_block; }
  Fa2Variant variant() const { return kernel_.variant; }
  // InBlock also when there is nothing to merge (one split).
  Fa2Merge merge() const { return merge_; }
  // The attention, plus the merge kernel where there is one.
  int kernels_per_launch() const override { return num_splits_ > 1 && merge_ == Fa2Merge::Kernel ? 2 : 1; }
  std::size_t workspace_bytes() const { return partial_out_.bytes() + partial_lse_.bytes() + counters_.bytes(); }

 private:
  Fa2DecodeShape shape_;
  const void* q_;
  const void* k_;
  const void* v_;
  const int* seq_lens_;
  void* out_;
  float scale_;
  Fa2Kernel kernel_;
  int num_splits_;
  Fa2Merge merge_;
  bool merge_programmatic_;  // sm_90+: the merge kernel launches programmatically after the attention kernel
  bool programmatic_ = false;
  int chunk_ = 0;  // keys per split, from the host's length hint (the last split also covers the rest)
  DeviceBuffer partial_out_;  // [B, Hq, num_splits, D] fp32
  DeviceBuffer partial_lse_;  // [B, Hq, num_splits] fp32 (log2 domain)
  DeviceBuffer counters_;     // [B, head groups] int32, zero between launches (in-block merge only)
};

// Writes this step's K and V rows, k_new/v_new [B, Hkv, D], into the caches at positions[b] (int32 [B], device).
// A position outside [0, max_seq) writes nothing (the Python wrapper rejects such positions before launching
// when it knows them on the host). Launch: grid (Hkv, B), D * itemsize / 16 threads.
class KvAppendOp : public Launchable {
 public:
  KvAppendOp(const Fa2DecodeShape& shape, std::uintptr_t k_cache, std::uintptr_t v_cache, std::uintptr_t k_new,
             std::uintptr_t v_new, std::uintptr_t positions);
  void launch(cudaStream_t stream) override;

 private:
  Fa2DecodeShape shape_;
  void* k_cache_;
  void* v_cache_;
  const void* k_new_;
  const void* v_new_;
  const int* positions_;
};

}  // namespace edgellm::cuda
