// FA2 decode attention (GQA, split-KV) and KV append, host side; see fa2_decode.h for the math, layouts and launch
// shape, fa2_decode_kernel.cuh for the attention kernel.
#include <cmath>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "fa2_decode.h"
#include "fa2_decode_kernel.cuh"

namespace edgellm::cuda {
namespace {

using fa2_detail::kKeysPerGroupStep;
using fa2_detail::next_pow2;
using fa2_detail::warps_for;

constexpr int kMaxSplits = 128;       // bounds the split workspace and the merge loop
constexpr int kShortContextKeys = 2048;  // fa2_default_heads_per_block's crossover (measured)
constexpr int kMaxStepsUnsplit = 4;      // fa2_default_num_splits: the SIMT kernel splits only longer sequences
constexpr int kMinStepsPerSplitMma = 2;  // fa2_default_num_splits: least work per split (tensor-core kernel)
constexpr int kTensorCoreMinKeys = 4096;  // fa2_default_variant: tensor cores from this many keys (measured)
constexpr int kMinGroupForTensorCores = 3;  // fa2_default_variant: query heads per KV head (measured: 1 loses)
constexpr float kLog2e = 1.4426950408889634f;

template <typename T>
__global__ void kv_append_kernel(T* __restrict__ k_cache, T* __restrict__ v_cache, const T* __restrict__ k_new,
                                 const T* __restrict__ v_new, const int* __restrict__ positions, int kv_heads,
                                 int max_seq, int vecs_per_row) {
  const int kv_head = blockIdx.x;
  const int b = blockIdx.y;
  const int pos = positions[b];
  if (pos < 0 || pos >= max_seq || static_cast<int>(threadIdx.x) >= vecs_per_row) return;
  const size_t src = (static_cast<size_t>(b) * kv_heads + kv_head) * vecs_per_row + threadIdx.x;
  const size_t dst = ((static_cast<size_t>(b) * kv_heads + kv_head) * max_seq + pos) * vecs_per_row + threadIdx.x;
  reinterpret_cast<uint4*>(k_cache)[dst] = reinterpret_cast<const uint4*>(k_new)[src];
  reinterpret_cast<uint4*>(v_cache)[dst] = reinterpret_cast<const uint4*>(v_new)[src];
}

int itemsize(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

// Largest power of two <= x (1 for x <= 1); next_pow2 (fa2_detail) is the smallest >= x.
int pow2_floor(int x) {
  int p = 1;
  while (p <= x / 2) p *= 2;
  return p;
}

void validate(const Fa2DecodeShape& s) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument(msg); };
  if (s.batch < 1) fail("batch: expected >= 1, got " + std::to_string(s.batch));
  if (s.kv_heads < 1) fail("kv_heads: expected >= 1, got " + std::to_string(s.kv_heads));
  if (s.q_heads < s.kv_heads || s.q_heads % s.kv_heads != 0) {
    fail("q_heads (" + std::to_string(s.q_heads) + ") must be a positive multiple of kv_heads (" +
         std::to_string(s.kv_heads) + ")");
  }
  if (s.head_dim != 64 && s.head_dim != 80 && s.head_dim != 96 && s.head_dim != 128 && s.head_dim != 256) {
    fail("head_dim: expected one of 64, 80, 96, 128, 256, got " + std::to_string(s.head_dim));
  }
  if (s.max_seq < 1) fail("max_seq: expected >= 1, got " + std::to_string(s.max_seq));
  if (s.dtype != DType::F16 && s.dtype != DType::BF16 && s.dtype != DType::F32) fail("dtype: unknown");
}

void require_aligned(std::uintptr_t address, const char* name) {
  if (address == 0 || address % 16 != 0) {
    throw std::invalid_argument(std::string(name) + ": device pointer must be non-null and 16-byte aligned");
  }
}

const Fa2DecodeShape& validated(const Fa2DecodeShape& s) {
  validate(s);
  return s;
}

int checked_heads_per_block(int requested, const Fa2DecodeShape& shape, int max_len_hint) {
  if (requested == 0) return fa2_default_heads_per_block(shape, max_len_hint);
  if (requested != 1 && requested != 2 && requested != 4 && requested != 8) {
    throw std::invalid_argument("heads_per_block: expected 0 (auto), 1, 2, 4 or 8, got " + std::to_string(requested));
  }
  return requested;
}

// Keys a block consumes per step; heads_per_block kMmaRows is the tensor-core variant (16 keys per warp).
int keys_per_block_step(DType dtype, int head_dim, int heads_per_block) {
  if (heads_per_block == fa2_detail::kMmaRows) return fa2_detail::kMmaWarps * 16;
  const int vec_elems = 16 / itemsize(dtype);
  const int vecs = head_dim / vec_elems;
  const int lanes = next_pow2(vecs) < 32 ? next_pow2(vecs) : 32;
  return warps_for(head_dim, heads_per_block) * (32 / lanes) * kKeysPerGroupStep;
}

int device_attribute(cudaDeviceAttr attr) {
  int device = 0, value = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

// dtype x head_dim x variant (x heads per block) -> kernel instantiation (fn null where there is none).
Fa2Kernel kernel_choice(DType dtype, int head_dim, int hpb, Fa2Variant variant) {
  switch (dtype) {
    case DType::F16: return fa2_detail::kernel_f16(head_dim, hpb, variant);
    case DType::BF16: return fa2_detail::kernel_bf16(head_dim, hpb, variant);
    default: return fa2_detail::kernel_f32(head_dim, hpb, variant);
  }
}

bool tensor_cores_available(const Fa2DecodeShape& shape, int cc_major) {
  return cc_major >= 8 && shape.dtype != DType::F32 && (shape.head_dim == 64 || shape.head_dim == 128);
}

// Whether an instantiation's shared memory (static + dynamic) fits this device's per-block opt-in limit.
bool fits_shared_memory(const Fa2Kernel& k) {
  const int optin = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  cudaFuncAttributes attr{};
  EDGELLM_CUDA_CHECK(cudaFuncGetAttributes(&attr, k.fn));
  return static_cast<int>(attr.sharedSizeBytes) + k.smem_bytes <= optin;
}

}  // namespace

int fa2_default_heads_per_block(const Fa2DecodeShape& shape, int max_len) {
  validate(shape);
  // Measured on an H200 over the four model shapes and 64..65536 keys (tools/sweep_fa2.py times every choice;
  // bench/results/nvidia-h200/fa2_variants_sweep.md): one query head per block is fastest or within 5% up to 2048
  // keys (most blocks, least work per thread; the re-reads of a K/V row by its group's heads hit L2). Beyond that,
  // fewer re-reads pay: the largest of 4, 2, 1 heads that divides the group evenly (a partial chunk would leave
  // lanes idle): Llama-3.1-8B (4 per KV head) at 8192 keys 22.2 us with 4 vs 26.6 with 1, Qwen2.5-1.5B (6) 14.5
  // with 2 vs 15.3 with 1; SmolLM2 (3) keeps 1 (11.3 us at 8192 keys, 11.6 with 2). Eight heads per block lose
  // everywhere (instruction-bound: every head's dot product is reduced across lanes with shuffles).
  if (max_len <= kShortContextKeys) return 1;
  const int group = shape.q_heads / shape.kv_heads;
  return group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
}

Fa2Variant fa2_default_variant(const Fa2DecodeShape& shape, int max_len, int cc_major) {
  validate(shape);
  // Measured on an H200 with the default split counts and the merge kernel, after the tensor-core ring's
  // alignment fix (tools/sweep_fa2_splits.py --kernels simt mma --merges kernel;
  // bench/results/experiments_fourteenth_session/fa2_splits.md), events / CUDA graphs, us: from 8192 keys the
  // tensor-core kernel wins on every model shape (8192 keys: SmolLM2 10.99 / 6.29 vs SIMT 11.60 / 7.46,
  // Qwen2.5-0.5B 11.18 / 6.90 vs 11.65 / 7.81, Qwen2.5-1.5B 13.12 / 8.26 vs 14.21 / 10.36, Llama-3.1-8B 19.50 /
  // 10.29 vs 22.26 / 14.18; 65536 keys: Llama-3.1-8B 76.2 vs 92.9); at 4096 keys it wins on the head-dim-128
  // shapes (Qwen2.5-1.5B 11.28 / 7.14 vs 11.57 / 7.91, Llama-3.1-8B 14.40 / 8.19 vs 15.79 / 10.35) and ties on
  // the others (SmolLM2 9.50 / 5.36 vs 9.47 / 5.71, Qwen2.5-0.5B 9.28 / 5.73 vs 9.17 / 5.86); at 2048 keys SIMT
  // wins with events on all four (8.34 vs 8.40 .. 9.12 vs 10.02). Lengths between 2048 and 4096 were not measured.
  // Without GQA (one query head per KV head: 15 of the 16 mma rows idle) the SIMT kernel wins at every length
  // (32 heads of 128 at 65536 keys: 254 vs 292 us; bench/results/nvidia-h200/fa2_variants_sweep.md). Groups of 2
  // were not measured: SIMT, whose 2 heads per block then read each K/V row once too.
  const int group = shape.q_heads / shape.kv_heads;
  return tensor_cores_available(shape, cc_major) && group >= kMinGroupForTensorCores && max_len >= kTensorCoreMinKeys
             ? Fa2Variant::TensorCore
             : Fa2Variant::Simt;
}

int fa2_default_num_splits(const Fa2DecodeShape& shape, int max_len, int multiprocessors, int heads_per_block) {
  validate(shape);
  const int group_size = shape.q_heads / shape.kv_heads;
  const int hpb = heads_per_block > 0 ? heads_per_block : fa2_default_heads_per_block(shape, max_len);
  const int blocks_without_split = shape.batch * shape.kv_heads * ((group_size + hpb - 1) / hpb);
  const int len = max_len < 1 ? 1 : (max_len > shape.max_seq ? shape.max_seq : max_len);
  const int step_keys = keys_per_block_step(shape.dtype, shape.head_dim, hpb);
  const int steps = (len + step_keys - 1) / step_keys;
  const int sms = multiprocessors < 1 ? 1 : multiprocessors;
  // Measured on an H200 with the merge kernel (Fa2Merge::Kernel, the default; tools/sweep_fa2_splits.py --merges
  // block kernel: every power-of-two split count on the four model shapes at 64..65536 keys, events and CUDA
  // graphs; bench/results/nvidia-h200/fa2_merge_sweep.md). A merge spread over one block per query head costs far
  // less than the last block's merge did, so both kernels split down to little work per split:
  int splits;
  if (hpb == fa2_detail::kMmaRows) {
    // Tensor cores (96 KB of ring per block): as many splits as keep to one block per SM (not rounded to a power of
    // two: SmolLM2-135M's 3 KV heads x 44 splits fill 132 SMs where 32 splits left 36 idle), each split
    // >= kMinStepsPerSplitMma steps (in the first sweep's 28 rows, that bound was at most 0.75 us from the fastest
    // power-of-two count with events, 0.89 in graphs; >= 8 steps, the rule measured with the in-block merge, up to
    // 4.4 us; in the check, at most 0.94 us from the fastest choice with events, 0.51 in graphs).
    const int per_sm = sms / blocks_without_split;
    const int by_length = steps / kMinStepsPerSplitMma;
    splits = per_sm < by_length ? per_sm : by_length;
  } else {
    // SIMT: no split up to kMaxStepsUnsplit steps (the second kernel costs more than the steps it saves: 2 splits
    // at 256 keys, SmolLM2-135M, 7.49 us with events against 5.73 unsplit in the kernels suites); beyond, the
    // smallest power of two whose blocks cover every SM, down to one block step per split (in the check at most
    // 0.38 us from the fastest choice with events, 0.55 in graphs; Qwen2.5-1.5B at 512 keys: 8 splits 6.96 / 3.96
    // us against 7.98 / 5.27 for the earlier rule's 4 splits merged in the kernel).
    const int cover = next_pow2((sms + blocks_without_split - 1) / blocks_without_split);
    splits = steps <= kMaxStepsUnsplit ? 1 : (pow2_floor(steps) < cover ? pow2_floor(steps) : cover);
  }
  splits = splits > kMaxSplits ? kMaxSplits : splits;
  return splits < 1 ? 1 : splits;
}

namespace {

// Auto is the merge kernel. At the default split counts of the rules' check (bench/results/nvidia-h200/
// fa2_merge_sweep.md, 26 rows with splits) it is faster than the in-block merge in CUDA graphs in every row (by
// 0.6-5.5 us), and with events faster in 16 rows (by up to 4.0 us: Qwen2.5-1.5B at 16384-65536 keys) and slower in
// 10 (by at most 0.7 us).
Fa2Merge checked_merge(Fa2Merge requested, int num_splits) {
  if (requested != Fa2Merge::Auto && requested != Fa2Merge::InBlock && requested != Fa2Merge::Kernel) {
    throw std::invalid_argument("merge: expected auto, in-block or kernel");
  }
  if (num_splits <= 1) return Fa2Merge::InBlock;  // nothing to merge
  return requested == Fa2Merge::Auto ? Fa2Merge::Kernel : requested;
}

// The kernel for a shape, requested variant and heads per block (0: default), with its dynamic shared memory
// enabled. An explicit request the device or shape cannot run is an error.
Fa2Kernel prepared_kernel(const Fa2DecodeShape& shape, Fa2Variant requested, int heads_per_block,
                             int max_len_hint) {
  if (requested != Fa2Variant::Auto && requested != Fa2Variant::Simt && requested != Fa2Variant::TensorCore) {
    throw std::invalid_argument("variant: expected auto, simt or tensor cores");
  }
  const int cc_major = device_attribute(cudaDevAttrComputeCapabilityMajor);
  // An explicit heads_per_block asks for the SIMT kernel (the only one with that choice).
  const Fa2Variant variant = requested != Fa2Variant::Auto ? requested
                             : heads_per_block != 0         ? Fa2Variant::Simt
                                                            : fa2_default_variant(shape, max_len_hint, cc_major);
  const bool tensor_cores = variant == Fa2Variant::TensorCore;
  if (tensor_cores && !tensor_cores_available(shape, cc_major)) {
    throw std::invalid_argument("variant: the tensor-core kernel needs fp16 or bf16 storage, head_dim 64 or 128 and "
                                "compute capability >= 8.0");
  }
  if (tensor_cores && heads_per_block != 0) {
    throw std::invalid_argument("heads_per_block: the tensor-core kernel takes the whole group (up to 16 heads)");
  }
  const int hpb = tensor_cores ? 0 : checked_heads_per_block(heads_per_block, shape, max_len_hint);
  const Fa2Kernel k = kernel_choice(shape.dtype, shape.head_dim, hpb, variant);
  if (!fits_shared_memory(k)) {
    throw std::invalid_argument("fa2_decode: " + std::to_string(k.smem_bytes) +
                                " bytes of shared memory per block exceed this device's limit");
  }
  if (k.smem_bytes > 0) {
    EDGELLM_CUDA_CHECK(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem_bytes));
  }
  return k;
}

}  // namespace

Fa2DecodeOp::Fa2DecodeOp(const Fa2DecodeShape& shape, std::uintptr_t q, std::uintptr_t k_cache,
                         std::uintptr_t v_cache, std::uintptr_t seq_lens, std::uintptr_t out, float scale,
                         int max_len_hint, int num_splits, int heads_per_block, Fa2Variant variant,
                         Fa2Merge merge)
    : shape_(validated(shape)),
      q_(reinterpret_cast<const void*>(q)),
      k_(reinterpret_cast<const void*>(k_cache)),
      v_(reinterpret_cast<const void*>(v_cache)),
      seq_lens_(reinterpret_cast<const int*>(seq_lens)),
      out_(reinterpret_cast<void*>(out)),
      scale_(scale),
      kernel_(prepared_kernel(shape, variant, heads_per_block, max_len_hint)),
      num_splits_(num_splits > 0 ? num_splits
                                 : fa2_default_num_splits(shape, max_len_hint,
                                                          device_attribute(cudaDevAttrMultiProcessorCount),
                                                          kernel_.heads_per_block)),
      merge_(checked_merge(merge, num_splits_)),
      merge_programmatic_(device_attribute(cudaDevAttrComputeCapabilityMajor) >= 9),
      partial_out_(num_splits_ > 1 ? static_cast<std::size_t>(shape.batch) * shape.q_heads * num_splits_ *
                                         shape.head_dim * sizeof(float)
                                   : 0),
      partial_lse_(num_splits_ > 1 ? static_cast<std::size_t>(shape.batch) * shape.q_heads * num_splits_ * sizeof(float)
                                   : 0),
      counters_(num_splits_ > 1 && merge_ == Fa2Merge::InBlock
                    ? static_cast<std::size_t>(shape.batch) * shape.q_heads * sizeof(int)
                    : 0) {
  require_aligned(q, "q");
  require_aligned(k_cache, "k_cache");
  require_aligned(v_cache, "v_cache");
  require_aligned(out, "out");
  if (seq_lens == 0 || seq_lens % 4 != 0) throw std::invalid_argument("seq_lens: device pointer must be 4-byte aligned");
  if (!(scale > 0.0f) || !std::isfinite(scale)) throw std::invalid_argument("scale: expected a finite value > 0");
  if (num_splits_ > kMaxSplits) throw std::invalid_argument("num_splits: at most " + std::to_string(kMaxSplits));
  const int hint = max_len_hint < 1 ? 1 : (max_len_hint > shape.max_seq ? shape.max_seq : max_len_hint);
  chunk_ = (hint + num_splits_ - 1) / num_splits_;
  if (counters_.bytes() > 0) EDGELLM_CUDA_CHECK(cudaMemset(counters_.data(), 0, counters_.bytes()));
}

void Fa2DecodeOp::launch(cudaStream_t stream) {
  const int group_size = shape_.q_heads / shape_.kv_heads;
  const int chunks = (group_size + kernel_.heads_per_block - 1) / kernel_.heads_per_block;
  const dim3 grid(num_splits_, shape_.kv_heads * chunks, shape_.batch);
  float scale_log2 = scale_ * kLog2e;
  float* po = static_cast<float*>(partial_out_.data());
  float* plse = static_cast<float*>(partial_lse_.data());
  const bool merge_kernel = num_splits_ > 1 && merge_ == Fa2Merge::Kernel;
  int* counters = merge_kernel ? nullptr : static_cast<int*>(counters_.data());  // null: no in-block merge
  int q_heads = shape_.q_heads, kv_heads = shape_.kv_heads, max_seq = shape_.max_seq, splits = num_splits_;
  int chunk = chunk_, kv_shared = shape_.kv_shared ? 1 : 0, programmatic = programmatic_ ? 1 : 0;
  // The kernel's parameters in order (the storage-type pointers pass as void pointers: same representation).
  void* args[] = {&q_, &k_, &v_, &seq_lens_, &out_, &po, &plse, &counters, &q_heads, &kv_heads, &max_seq,
                  &scale_log2, &splits, &chunk, &kv_shared, &programmatic};
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg = launch_config(grid, dim3(kernel_.threads), static_cast<std::size_t>(kernel_.smem_bytes),
                                               stream, programmatic_, attr);
  EDGELLM_CUDA_CHECK(cudaLaunchKernelExC(&cfg, kernel_.fn, args));
  EDGELLM_CUDA_CHECK_LAUNCH("fa2_decode_kernel");
  if (!merge_kernel) return;
  void* merge_args[] = {&po, &plse, &out_, &splits};
  cudaLaunchAttribute merge_attr;
  const cudaLaunchConfig_t merge_cfg =
      launch_config(dim3(shape_.batch * shape_.q_heads), dim3(fa2_detail::kMergeThreads), 0, stream,
                    merge_programmatic_, merge_attr);
  EDGELLM_CUDA_CHECK(cudaLaunchKernelExC(&merge_cfg, kernel_.merge_fn, merge_args));
  EDGELLM_CUDA_CHECK_LAUNCH("fa2_merge_kernel");
}

void Fa2DecodeOp::set_programmatic(bool on) {
  if (on && device_attribute(cudaDevAttrComputeCapabilityMajor) < 9) {
    throw std::invalid_argument("fa2_decode: programmatic launch needs compute capability >= 9.0");
  }
  programmatic_ = on;
}

KvAppendOp::KvAppendOp(const Fa2DecodeShape& shape, std::uintptr_t k_cache, std::uintptr_t v_cache,
                       std::uintptr_t k_new, std::uintptr_t v_new, std::uintptr_t positions)
    : shape_(validated(shape)),
      k_cache_(reinterpret_cast<void*>(k_cache)),
      v_cache_(reinterpret_cast<void*>(v_cache)),
      k_new_(reinterpret_cast<const void*>(k_new)),
      v_new_(reinterpret_cast<const void*>(v_new)),
      positions_(reinterpret_cast<const int*>(positions)) {
  require_aligned(k_cache, "k_cache");
  require_aligned(v_cache, "v_cache");
  require_aligned(k_new, "k_new");
  require_aligned(v_new, "v_new");
  if (positions == 0 || positions % 4 != 0) throw std::invalid_argument("positions: device pointer must be 4-byte aligned");
}

void KvAppendOp::launch(cudaStream_t stream) {
  const int vecs_per_row = shape_.head_dim * itemsize(shape_.dtype) / 16;
  const dim3 grid(shape_.kv_heads, shape_.batch);
  // The copy moves raw 16-byte vectors, so one instantiation serves every storage type.
  kv_append_kernel<uint4><<<grid, vecs_per_row, 0, stream>>>(
      static_cast<uint4*>(k_cache_), static_cast<uint4*>(v_cache_), static_cast<const uint4*>(k_new_),
      static_cast<const uint4*>(v_new_), positions_, shape_.kv_heads, shape_.max_seq, vecs_per_row);
  EDGELLM_CUDA_CHECK_LAUNCH("kv_append_kernel");
}

}  // namespace edgellm::cuda
