// FA2 decode attention kernel (device code shared by the per-storage-type translation units
// fa2_decode_{f16,bf16,f32}.cu, which instantiate it; the host side is fa2_decode.cu). Math, layouts and launch
// shape: fa2_decode.h. Split into one translation unit per storage type so that the instantiations of each
// compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fa2_decode.h"
#include "pdl.cuh"

namespace edgellm::cuda::fa2_detail {

constexpr int kKeysPerGroupStep = 4;  // keys each lane group loads per step (loads in flight)

constexpr int next_pow2(int x) { return x <= 1 ? 1 : 2 * next_pow2((x + 1) / 2); }

// Compile-time geometry of one (storage type, head dim, warps per block) triple.
template <typename T, int D, int NW>
struct Geometry {
  static constexpr int kVecElems = 16 / sizeof(T);                    // elements per 16-byte vector
  static constexpr int kVecsPerRow = D / kVecElems;                   // vectors per K/V row
  static constexpr int kLanesPerKey = next_pow2(kVecsPerRow) < 32 ? next_pow2(kVecsPerRow) : 32;
  static constexpr int kVecsPerLane = (kVecsPerRow + kLanesPerKey - 1) / kLanesPerKey;
  static constexpr int kElemsPerLane = kVecsPerLane * kVecElems;
  static constexpr int kGroupsPerWarp = 32 / kLanesPerKey;           // keys a warp holds at once
  static constexpr int kKeysPerBlockStep = NW * kGroupsPerWarp * kKeysPerGroupStep;
  static_assert(D % kVecElems == 0, "rows must be whole 16-byte vectors");
};

__device__ __forceinline__ void unpack(const uint4& raw, float* f, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void unpack(const uint4& raw, float* f, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void unpack(const uint4& raw, float* f, const float*) {
  f[0] = __uint_as_float(raw.x);
  f[1] = __uint_as_float(raw.y);
  f[2] = __uint_as_float(raw.z);
  f[3] = __uint_as_float(raw.w);
}

__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }

// 2^x on the special-function unit (MUFU.EX2): ex2.approx(-inf) = +0, relative error about 2^-22 (below every
// storage type's rounding and the fp32 tests' 1e-5), subnormal results flushed to zero. -inf - -inf would be NaN:
// callers pass differences against a finite maximum or guard the all-empty case.
__device__ __forceinline__ float exp2_fast(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Warps per block: 8 for one or two heads per block; 4 for 4 or 8 heads, whose threads need ~190-255 registers
// (ptxas -v): at 8 warps only one such block fits an SM's 64K registers, at 4 warps two do. 4 warps also keep the
// partial accumulators of D = 256 within 32 KB of shared memory.
constexpr int warps_for(int head_dim, int heads_per_block) {
  return heads_per_block >= 4 || head_dim * heads_per_block * 8 * 4 > 32768 ? 4 : 8;
}

// Calls f(u, i, key, offset) for each of this lane's 16-byte vectors of one step of keys (KT per lane group):
// u-th key of the group, i-th vector of the row, the key's index, the vector's element offset in the cache;
// vectors past the row (D not a multiple of the lanes' share) are skipped.
template <typename T, int D, int NW, class F>
__device__ __forceinline__ void for_step_vectors(int step, int warp, int key_group, int lane_in_key, F f) {
  using G = Geometry<T, D, NW>;
#pragma unroll
  for (int u = 0; u < kKeysPerGroupStep; ++u) {
    const int key = step + u * NW * G::kGroupsPerWarp + warp * G::kGroupsPerWarp + key_group;
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) {
      const int vec = lane_in_key + i * G::kLanesPerKey;
      if (vec < G::kVecsPerRow) f(u, i, key, static_cast<size_t>(key) * D + vec * G::kVecElems);
    }
  }
}

// Loads one step of keys of K and V into registers; keys at or beyond `key_end` read nothing (zeros).
template <typename T, int D, int NW>
__device__ __forceinline__ void load_step(const T* k_base, const T* v_base, int step, int key_end, int warp,
                                          int key_group, int lane_in_key,
                                          uint4 (&k_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                          uint4 (&v_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane]) {
#pragma unroll
  for (int u = 0; u < kKeysPerGroupStep; ++u) {
#pragma unroll
    for (int i = 0; i < Geometry<T, D, NW>::kVecsPerLane; ++i) k_raw[u][i] = v_raw[u][i] = make_uint4(0, 0, 0, 0);
  }
  for_step_vectors<T, D, NW>(step, warp, key_group, lane_in_key, [&](int u, int i, int key, size_t off) {
    if (key < key_end) {
      k_raw[u][i] = __ldg(reinterpret_cast<const uint4*>(k_base + off));
      v_raw[u][i] = __ldg(reinterpret_cast<const uint4*>(v_base + off));
    }
  });
}

// Reloads, through L2 (ld.global.cg), the keys in [from, key_end) of a step that load_step issued before a
// programmatic wait: rows the previous kernel may have written (the newest one) or that were left out then.
template <typename T, int D, int NW>
__device__ __forceinline__ void reload_step(const T* k_base, const T* v_base, int step, int from, int key_end,
                                            int warp, int key_group, int lane_in_key,
                                            uint4 (&k_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                            uint4 (&v_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane]) {
  for_step_vectors<T, D, NW>(step, warp, key_group, lane_in_key, [&](int u, int i, int key, size_t off) {
    if (key >= from && key < key_end) {
      k_raw[u][i] = __ldcg(reinterpret_cast<const uint4*>(k_base + off));
      v_raw[u][i] = __ldcg(reinterpret_cast<const uint4*>(v_base + off));
    }
  });
}

// Folds one step of loaded keys into the online-softmax state of this lane's key group.
template <typename T, int D, int NW, int HPB>
__device__ __forceinline__ void consume_step(const T* tag, int step, int key_end, int warp, int key_group,
                                             const float (&q_reg)[HPB][Geometry<T, D, NW>::kElemsPerLane],
                                             const uint4 (&k_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                             const uint4 (&v_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                             float (&m)[HPB], float (&l)[HPB],
                                             float (&acc)[HPB][Geometry<T, D, NW>::kElemsPerLane]) {
  using G = Geometry<T, D, NW>;
  constexpr int E = G::kElemsPerLane;
  constexpr int KT = kKeysPerGroupStep;
  float s[HPB][KT];
#pragma unroll
  for (int u = 0; u < KT; ++u) {
    const int key = step + u * NW * G::kGroupsPerWarp + warp * G::kGroupsPerWarp + key_group;
    float kf[E];
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) unpack(k_raw[u][i], kf + i * G::kVecElems, tag);
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < E; ++e) dot = fmaf(q_reg[h][e], kf[e], dot);
      // Butterfly over the lanes of one key: every lane of the group ends with the same full sum.
#pragma unroll
      for (int offset = G::kLanesPerKey / 2; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      s[h][u] = key < key_end ? dot : -INFINITY;
    }
  }
  // Online softmax, one rescale per step; p overwrites s.
#pragma unroll
  for (int h = 0; h < HPB; ++h) {
    float step_max = s[h][0];
#pragma unroll
    for (int u = 1; u < KT; ++u) step_max = fmaxf(step_max, s[h][u]);
    const float m_new = fmaxf(m[h], step_max);
    // m_new == -inf: no valid key yet for this group (uniform within the group); all p are 0 then.
    const float correction = m_new == -INFINITY ? 1.0f : exp2_fast(m[h] - m_new);
    float p_sum = 0.0f;
#pragma unroll
    for (int u = 0; u < KT; ++u) {
      s[h][u] = m_new == -INFINITY ? 0.0f : exp2_fast(s[h][u] - m_new);
      p_sum += s[h][u];
    }
    l[h] = l[h] * correction + p_sum;
    m[h] = m_new;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[h][e] *= correction;
  }
  // P @ V: each V row is converted once and used by every head of the group. A masked key's row counts as zero:
  // its p is 0, but the cache slot past the length may hold anything (0 * NaN would poison the sum).
#pragma unroll
  for (int u = 0; u < KT; ++u) {
    const int key = step + u * NW * G::kGroupsPerWarp + warp * G::kGroupsPerWarp + key_group;
    float vf[E];
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) {
      unpack(key < key_end ? v_raw[u][i] : make_uint4(0, 0, 0, 0), vf + i * G::kVecElems, tag);
    }
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
#pragma unroll
      for (int e = 0; e < E; ++e) acc[h][e] = fmaf(s[h][u], vf[e], acc[h][e]);
    }
  }
}

// A running merge of split partials (both merges): the largest log-sum-exp so far, the sum of the splits' weights
// 2^(lse - mx) and the weighted sum of their partial outputs (4 columns).
struct MergeState {
  float mx = -INFINITY;
  float total = 0.0f;
  float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
};

// Folds one split (log-sum-exp lse, -inf when empty, and its 4 columns p) into st. Branch-free, so that unrolled
// iterations' loads can all be issued before the first result is needed.
__device__ __forceinline__ void merge_fold(MergeState& st, float lse, const float4& p) {
  const float m_new = fmaxf(st.mx, lse);
  const float c_old = st.mx == m_new ? 1.0f : exp2_fast(st.mx - m_new);  // st.mx < m_new here, m_new finite
  const float w = lse == -INFINITY ? 0.0f : exp2_fast(lse - m_new);
  st.total = st.total * c_old + w;
  st.o.x = fmaf(w, p.x, st.o.x * c_old);
  st.o.y = fmaf(w, p.y, st.o.y * c_old);
  st.o.z = fmaf(w, p.z, st.o.z * c_old);
  st.o.w = fmaf(w, p.w, st.o.w * c_old);
  st.mx = m_new;
}

// The end of a block, shared by both kernels: combines the warps' online-softmax states published in shared
// memory (s_m, s_l: [NW][HPB]; s_acc: [NW][HPB] rows of kAccStride floats, the first D used; the caller has
// synchronised), then writes the output
// (num_splits == 1) or this split's normalised partial and log-sum-exp; the last block of each (sequence, head
// group) to finish, found with a counter (threadfence + atomicAdd, reset by that block so that the op can be
// replayed in a CUDA graph), merges every split's partial. counters == nullptr with num_splits > 1: the merge is a
// kernel of its own (fa2_merge_kernel, launched next); the block lets it start (programmatic trigger) and only
// writes its partial.
template <typename T, int D, int NW, int HPB, int kAccStride = D>
__device__ __forceinline__ void finish_block(const float* s_m, const float* s_l, const float* s_acc, int heads_here,
                                             int b, int q_heads, int head0, int num_splits, T* __restrict__ out,
                                             float* __restrict__ partial_out, float* __restrict__ partial_lse,
                                             int* __restrict__ counters) {
  const int split = blockIdx.x;
  // Only the merge kernel may start early: a single split has no counters either (and no dependent of its own:
  // letting the next kernel start here cost the GPU engine 1.2% at depth 0).
  if (num_splits > 1 && counters == nullptr) pdl_trigger();
  const size_t bh0 = static_cast<size_t>(b) * q_heads + head0;  // first (sequence, head) row of this block
  for (int idx = threadIdx.x; idx < heads_here * D; idx += (NW * 32)) {
    const int h = idx / D;
    const int d = idx % D;
    float block_max = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w) block_max = fmaxf(block_max, s_m[w * HPB + h]);
    float sum = 0.0f, o = 0.0f;
    if (block_max != -INFINITY) {
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float c = exp2_fast(s_m[w * HPB + h] - block_max);
        sum += s_l[w * HPB + h] * c;
        o += s_acc[(w * HPB + h) * kAccStride + d] * c;
      }
    }
    if (num_splits == 1) {
      store(out + (bh0 + h) * D + d, sum > 0.0f ? o / sum : 0.0f);
    } else {
      const size_t row = (bh0 + h) * num_splits + split;
      partial_out[row * D + d] = sum > 0.0f ? o / sum : 0.0f;
      if (d == 0) partial_lse[row] = sum > 0.0f ? block_max + log2f(sum) : -INFINITY;
    }
  }
  if (num_splits == 1 || counters == nullptr) return;

  // The last block of this (sequence, head group) to finish merges every split's partial output.
  __shared__ bool s_is_last;
  __threadfence();  // make this block's partials visible device-wide before announcing completion
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = counters + static_cast<size_t>(b) * gridDim.y + blockIdx.y;
    const int done = atomicAdd(counter, 1);
    s_is_last = (done == num_splits - 1);
    if (s_is_last) *counter = 0;  // ready for the next launch (graph replays reuse the workspace)
  }
  __syncthreads();
  if (!s_is_last) return;
  __threadfence();

  // Weighted sum of the partial outputs, 4 columns per thread: one pass with a running maximum of the splits'
  // log-sum-exps (as in the online softmax), so that every load is independent of the arithmetic and the merge
  // costs one round trip to L2.
  constexpr int kCols = D / 4;
  for (int idx = threadIdx.x; idx < heads_here * kCols; idx += (NW * 32)) {
    const int h = idx / kCols;
    const int c = idx % kCols;
    const size_t row0 = (bh0 + h) * num_splits;
    const float4* src = reinterpret_cast<const float4*>(partial_out + row0 * D) + c;
    MergeState st;
#pragma unroll 16
    for (int sp = 0; sp < num_splits; ++sp) {
      merge_fold(st, __ldcg(partial_lse + row0 + sp), __ldcg(src + static_cast<size_t>(sp) * kCols));
    }
    const float inv = st.total > 0.0f ? 1.0f / st.total : 0.0f;
    T* dst = out + (bh0 + h) * D + 4 * c;
    store(dst, st.o.x * inv);
    store(dst + 1, st.o.y * inv);
    store(dst + 2, st.o.z * inv);
    store(dst + 3, st.o.w * inv);
  }
}

// The split merge as its own kernel (Fa2Merge::Kernel in fa2_decode.h), for when one block per head group would
// merge many splits alone (its loads then wait on one SM's few requests in flight; here every query row has a
// block and every load goes out at once):
//   out[row, :] = sum_s 2^(lse_s - M) partial[row, s, :] / sum_s 2^(lse_s - M),   M = max_s lse_s
// with row = b * Hq + h, partial / lse as the attention kernels write them (lse in the log2 domain, -inf for an
// empty split, whose weight is 0; a row with every split empty gives zeros, as the in-block merge does).
// Launch: grid (B * Hq), kMergeThreads threads: thread = (column group of 4 floats c, split slice j); slice j
// folds splits j, j + kSlices, ... with a running maximum (as the in-block merge), then slice 0 combines the
// slices through shared memory. Launched programmatically on sm_90+ (it waits before reading the partials, so it
// may start while the attention kernel's last blocks run; their blocks trigger it when their key loops end).
constexpr int kMergeThreads = 256;

template <typename T, int D>
__global__ void __launch_bounds__(kMergeThreads)
fa2_merge_kernel(const float* __restrict__ partial_out, const float* __restrict__ partial_lse, T* __restrict__ out,
                 int num_splits) {
  constexpr int kCols = D / 4;
  constexpr int kSlices = kMergeThreads / kCols;  // D = 64: 16, 80: 12, 96: 10, 128: 8, 256: 4
  __shared__ float s_mx[kSlices][kCols];
  __shared__ float s_total[kSlices][kCols];
  __shared__ float4 s_o[kSlices][kCols];
  const int c = threadIdx.x % kCols;
  const int slice = threadIdx.x / kCols;
  const size_t row0 = static_cast<size_t>(blockIdx.x) * num_splits;
  pdl_wait();  // the partials are the previous kernel's output
  const float4* src = reinterpret_cast<const float4*>(partial_out + row0 * D) + c;
  MergeState st;
  // Threads past kSlices * kCols (D = 80, 96) take no split and stay for the barrier.
  const int first = slice < kSlices ? slice : num_splits;
#pragma unroll 8
  for (int sp = first; sp < num_splits; sp += kSlices) {
    merge_fold(st, __ldcg(partial_lse + row0 + sp), __ldcg(src + static_cast<size_t>(sp) * kCols));
  }
  if (slice < kSlices) {  // a slice past the splits leaves -inf / 0: weight 0 below
    s_mx[slice][c] = st.mx;
    s_total[slice][c] = st.total;
    s_o[slice][c] = st.o;
  }
  __syncthreads();
  if (slice != 0) return;
  float m_all = -INFINITY;
#pragma unroll
  for (int j = 0; j < kSlices; ++j) m_all = fmaxf(m_all, s_mx[j][c]);
  float sum = 0.0f;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int j = 0; j < kSlices; ++j) {
    const float w = s_mx[j][c] == -INFINITY ? 0.0f : exp2_fast(s_mx[j][c] - m_all);
    sum = fmaf(w, s_total[j][c], sum);
    acc.x = fmaf(w, s_o[j][c].x, acc.x);
    acc.y = fmaf(w, s_o[j][c].y, acc.y);
    acc.z = fmaf(w, s_o[j][c].z, acc.z);
    acc.w = fmaf(w, s_o[j][c].w, acc.w);
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  T* dst = out + static_cast<size_t>(blockIdx.x) * D + 4 * c;
  store(dst, acc.x * inv);
  store(dst + 1, acc.y * inv);
  store(dst + 2, acc.z * inv);
  store(dst + 3, acc.w * inv);
}

// What one block works on (both kernels): sequence b (blockIdx.z), a KV head and up to HPB of its group's query
// heads from head0 (blockIdx.y), that KV head's cache rows, and the keys [key_begin, key_stop) of its split
// (blockIdx.x). The chunk comes from the host (fixed per op), so the first loads go out before the sequence length
// (a dependent load) arrives and masks them; the last split runs to max_seq, so a length above the host's hint is
// still covered (only slower). kv_shared: every query of the batch reads the cache of sequence 0 (a prefill chunk).
template <typename T>
struct BlockWork {
  int b, head0, heads_here, key_begin, key_stop;
  const T* k_base;
  const T* v_base;
};

template <int HPB, int D, typename T>
__device__ __forceinline__ BlockWork<T> block_work(const T* k_cache, const T* v_cache, int q_heads, int kv_heads,
                                                   int max_seq, int num_splits, int chunk, int kv_shared) {
  BlockWork<T> w;
  const int split = blockIdx.x;
  w.b = blockIdx.z;
  const int group_size = q_heads / kv_heads;
  const int chunks_per_kv_head = (group_size + HPB - 1) / HPB;
  const int kv_head = blockIdx.y / chunks_per_kv_head;
  w.head0 = kv_head * group_size + (blockIdx.y % chunks_per_kv_head) * HPB;
  w.heads_here = min(HPB, kv_head * group_size + group_size - w.head0);
  const int cache_b = kv_shared ? 0 : w.b;
  const size_t head_offset = (static_cast<size_t>(cache_b) * kv_heads + kv_head) * static_cast<size_t>(max_seq) * D;
  w.k_base = k_cache + head_offset;
  w.v_base = v_cache + head_offset;
  w.key_begin = min(max_seq, split * chunk);
  w.key_stop = split == num_splits - 1 ? max_seq : min(max_seq, w.key_begin + chunk);
  return w;
}

template <typename T, int D, int HPB, int NW = warps_for(D, HPB)>
__global__ void __launch_bounds__(NW * 32)
fa2_decode_kernel(const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                  const int* __restrict__ seq_lens, T* __restrict__ out, float* __restrict__ partial_out,
                  float* __restrict__ partial_lse, int* __restrict__ counters, int q_heads, int kv_heads,
                  int max_seq, float scale_log2, int num_splits, int chunk, int kv_shared, int programmatic) {
  using G = Geometry<T, D, NW>;
  constexpr int E = G::kElemsPerLane;
  constexpr int TPK = G::kLanesPerKey;
  constexpr int KT = kKeysPerGroupStep;
  constexpr int kStep = G::kKeysPerBlockStep;

  const BlockWork<T> w = block_work<HPB, D>(k_cache, v_cache, q_heads, kv_heads, max_seq, num_splits, chunk, kv_shared);
  const int b = w.b, head0 = w.head0, heads_here = w.heads_here, key_begin = w.key_begin, key_stop = w.key_stop;
  const T* k_base = w.k_base;
  const T* v_base = w.v_base;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int key_group = lane / TPK;  // which of the warp's keys this lane works on
  const int lane_in_key = lane % TPK;
  uint4 k_a[KT][G::kVecsPerLane], v_a[KT][G::kVecsPerLane];
  uint4 k_b[KT][G::kVecsPerLane], v_b[KT][G::kVecsPerLane];
  // Programmatic launch (fa2_decode.h): before the wait, only cache rows below the newest one, by a length read
  // now (its writer may still be running: the value can be stale, and the first step's rows from `fresh` on are
  // loaded again after the wait).
  int fresh = key_begin;
  if (programmatic) {
    const int pre_len = __ldcg(seq_lens + b);
    fresh = max(key_begin, min(key_stop, pre_len - 1));
    load_step<T, D, NW>(k_base, v_base, key_begin, fresh, warp, key_group, lane_in_key, k_a, v_a);
    pdl_wait();
  } else {
    load_step<T, D, NW>(k_base, v_base, key_begin, key_stop, warp, key_group, lane_in_key, k_a, v_a);
  }

  // Queries, pre-scaled into the log2 domain (scores then go through exp2).
  float q_reg[HPB][E];
#pragma unroll
  for (int h = 0; h < HPB; ++h) {
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) {
      const int vec = lane_in_key + i * TPK;
      float f[G::kVecElems] = {};
      if (h < heads_here && vec < G::kVecsPerRow) {
        const T* src = q + (static_cast<size_t>(b) * q_heads + head0 + h) * D + vec * G::kVecElems;
        unpack(__ldcg(reinterpret_cast<const uint4*>(src)), f, src);  // L2: q may come from the previous kernel
      }
#pragma unroll
      for (int e = 0; e < G::kVecElems; ++e) q_reg[h][i * G::kVecElems + e] = f[e] * scale_log2;
    }
  }

  int len = __ldcg(seq_lens + b);
  len = len < 0 ? 0 : (len > max_seq ? max_seq : len);
  const int key_end = min(len, key_stop);
  if (programmatic) {
    reload_step<T, D, NW>(k_base, v_base, key_begin, min(fresh, len - 1), key_end, warp, key_group, lane_in_key, k_a,
                          v_a);
  }

  float m[HPB], l[HPB], acc[HPB][E];
#pragma unroll
  for (int h = 0; h < HPB; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[h][e] = 0.0f;
  }

  // Two register buffers: the next step's loads are in flight while the current step is consumed.
  for (int step = key_begin; step < key_end; step += 2 * kStep) {
    if (step + kStep < key_end) load_step<T, D, NW>(k_base, v_base, step + kStep, key_end, warp, key_group, lane_in_key, k_b, v_b);
    consume_step<T, D, NW, HPB>(k_base, step, key_end, warp, key_group, q_reg, k_a, v_a, m, l, acc);
    if (step + kStep >= key_end) break;
    if (step + 2 * kStep < key_end) load_step<T, D, NW>(k_base, v_base, step + 2 * kStep, key_end, warp, key_group, lane_in_key, k_a, v_a);
    consume_step<T, D, NW, HPB>(k_base, step + kStep, key_end, warp, key_group, q_reg, k_b, v_b, m, l, acc);
  }

  // Merge the key groups of each warp: lanes with the same lane_in_key hold the same slice of the row.
#pragma unroll
  for (int offset = TPK; offset < 32; offset *= 2) {
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      const float m_other = __shfl_xor_sync(0xffffffffu, m[h], offset);
      const float l_other = __shfl_xor_sync(0xffffffffu, l[h], offset);
      const float m_new = fmaxf(m[h], m_other);
      const float c_self = m_new == -INFINITY ? 0.0f : exp2_fast(m[h] - m_new);
      const float c_other = m_new == -INFINITY ? 0.0f : exp2_fast(m_other - m_new);
      l[h] = l[h] * c_self + l_other * c_other;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const float a_other = __shfl_xor_sync(0xffffffffu, acc[h][e], offset);
        acc[h][e] = acc[h][e] * c_self + a_other * c_other;
      }
      m[h] = m_new;
    }
  }

  // Merge the warps through shared memory; lanes of key group 0 publish their warp's state.
  __shared__ float s_m[NW][HPB];
  __shared__ float s_l[NW][HPB];
  __shared__ float s_acc[NW][HPB][D];
  if (key_group == 0) {
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      if (lane_in_key == 0) {
        s_m[warp][h] = m[h];
        s_l[warp][h] = l[h];
      }
#pragma unroll
      for (int i = 0; i < G::kVecsPerLane; ++i) {
        const int vec = lane_in_key + i * TPK;
        if (vec < G::kVecsPerRow) {
#pragma unroll
          for (int e = 0; e < G::kVecElems; ++e) s_acc[warp][h][vec * G::kVecElems + e] = acc[h][i * G::kVecElems + e];
        }
      }
    }
  }
  __syncthreads();

  finish_block<T, D, NW, HPB>(&s_m[0][0], &s_l[0][0], &s_acc[0][0][0], heads_here, b, q_heads, head0, num_splits,
                              out, partial_out, partial_lse, counters);
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core variant (sm_80+, fp16/bf16 storage, D = 64 or 128): the GQA group's query heads are the M = 16 rows
// of mma.sync.m16n8k16 (rows past the group are zero), so each K/V row is read once for up to 16 heads and the
// products run on tensor cores with fp32 accumulation, the way FlashAttention-2 does for its query tiles.
//   S[16 heads x 8 keys]  = Q[16 x D] . K^T[D x 8]   (D/16 mmas; the fp32 scores are then scaled by scale*log2e)
//   O[16 heads x 8 d]    += P[16 x 16 keys] . V[16 keys x 8]   (P rounded to the storage type, as in FA2)
// Each warp takes 16 keys per step (two S tiles, whose accumulators are exactly P's A fragment: no shuffles).
// K/V tiles stream from the cache into a per-warp shared-memory ring with cp.async (below); fragments are read
// from it with 16-byte loads, using two re-indexings that leave the products unchanged: the contraction index d
// of S is permuted (lane t of a quad loads d = 32J + 8t .. +7 of its key: words 0-1 feed k-tile 2J, words 2-3
// k-tile 2J+1; Q's fragments use the same order), and the output columns of O are permuted (n-tile 8J + u,
// column n holds d = 64J + 8n + u: lane g of the warp loads d = 64J + 8g .. +7 of keys 2t, 2t+1, 2t+8, 2t+9, and
// byte permutes pair the two keys of each d into one register).
constexpr int kMmaRows = 16;       // query heads per block (M of the mma)
constexpr int kMmaWarps = 4;

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                          const __half*) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                          const __nv_bfloat16*) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values rounded to the storage type and packed (lo in the low half: the smaller k index).
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __half*) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __nv_bfloat16*) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// One warp step's fragments: K rows (keys base + r and base + 8 + r, 16-byte pieces at d = 32J + 8t) and V rows
// (keys base + 2t, 2t+1, 2t+8, 2t+9, pieces at d = 64J + 8r).
template <int D>
struct MmaLoads {
  uint4 k[2][D / 32];
  uint4 v[4][D / 64];
};

// Folds one warp step (16 keys from `base`) into the online-softmax state of rows r (index 0) and r + 8 (index 1).
// kMasked: some of the 16 keys may be at or past key_end (their scores become -inf); false only for whole steps,
// which then skip the per-key tests. O is rescaled only when some row's running maximum moved (a warp vote): the
// factor is exactly 1 otherwise.
template <typename T, int D, bool kMasked = true>
__device__ __forceinline__ void mma_consume(const MmaLoads<D>& x, const uint32_t (&qa)[D / 16][4], int base,
                                            int key_end, int t, float scale_log2, float (&m)[2], float (&l)[2],
                                            float (&o)[D / 8][4]) {
  const T* tag = nullptr;
  float s[2][4];
#pragma unroll
  for (int tile = 0; tile < 2; ++tile) {
    s[tile][0] = s[tile][1] = s[tile][2] = s[tile][3] = 0.0f;
#pragma unroll
    for (int j = 0; j < D / 32; ++j) {
      mma_16816(s[tile], qa[2 * j], x.k[tile][j].x, x.k[tile][j].y, tag);
      mma_16816(s[tile], qa[2 * j + 1], x.k[tile][j].z, x.k[tile][j].w, tag);
    }
  }
  // s[tile][e]: row r (e < 2) or r + 8 (e >= 2), key base + 8 tile + 2t + (e & 1).
  float step_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int tile = 0; tile < 2; ++tile) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = base + 8 * tile + 2 * t + (e & 1);
      s[tile][e] = !kMasked || key < key_end ? s[tile][e] * scale_log2 : -INFINITY;
      step_max[e >> 1] = fmaxf(step_max[e >> 1], s[tile][e]);
    }
  }
  float correction[2];
  bool moved = false;
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    // The quad (4 lanes) holds one row's 16 keys.
    step_max[row] = fmaxf(step_max[row], __shfl_xor_sync(0xffffffffu, step_max[row], 1));
    step_max[row] = fmaxf(step_max[row], __shfl_xor_sync(0xffffffffu, step_max[row], 2));
    const float m_new = fmaxf(m[row], step_max[row]);
    moved = moved || m_new != m[row];
    // m_new == -inf: nothing seen yet (every key so far masked), and -inf - -inf would be NaN.
    correction[row] = m_new == -INFINITY ? 1.0f : exp2_fast(m[row] - m_new);
    l[row] *= correction[row];
    m[row] = m_new;
  }
#pragma unroll
  for (int tile = 0; tile < 2; ++tile) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float mr = m[e >> 1];
      s[tile][e] = kMasked && mr == -INFINITY ? 0.0f : exp2_fast(s[tile][e] - mr);
      l[e >> 1] += s[tile][e];  // this lane's share; the quad's shares are summed at the end
    }
  }
  if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= correction[0];
      o[n][1] *= correction[0];
      o[n][2] *= correction[1];
      o[n][3] *= correction[1];
    }
  }
  // P's A fragment: rows r / r + 8, keys 2t, 2t+1 (tile 0) and 2t+8, 2t+9 (tile 1).
  const uint32_t pa[4] = {pack2(s[0][0], s[0][1], tag), pack2(s[0][2], s[0][3], tag), pack2(s[1][0], s[1][1], tag),
                          pack2(s[1][2], s[1][3], tag)};
#pragma unroll
  for (int j = 0; j < D / 64; ++j) {
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      // Column n = r of n-tile 8j + u is d = 64j + 8r + u: half u of each V piece; pair keys (2t, 2t+1) and
      // (2t+8, 2t+9).
      const unsigned sel = (u & 1) ? 0x7632u : 0x5410u;
      const uint32_t b0 = __byte_perm(word(x.v[0][j], u >> 1), word(x.v[1][j], u >> 1), sel);
      const uint32_t b1 = __byte_perm(word(x.v[2][j], u >> 1), word(x.v[3][j], u >> 1), sel);
      mma_16816(o[8 * j + u], pa, b0, b1, tag);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The tensor-core kernel's loads: a per-warp ring of MmaRing::kStages shared-memory tiles filled with
// cp.async, so that each warp keeps kStages - 1 tiles (16 keys of K and V each) in flight from DRAM while it
// computes on another, without holding them in registers (an earlier version loaded the fragments straight into
// a double buffer of registers: 255 registers with spills at D = 128 against 168 here; measured side by side, the
// ring was 2-24% faster at 16384-65536 keys except on SmolLM2-135M at 65536 keys, 3.6% slower there:
// bench/results/nvidia-h200/fa2_variants_sweep.md).
// Ring layout: per warp, kStages tiles of [K: 16 keys x D][V: 16 keys x D] in the storage type; the 16-byte
// chunk c of key row k sits at chunk c ^ ring_swizzle(k), so that the fragment reads (8 lanes of a quarter warp:
// two K rows x four chunks, or four V rows x two chunks) and the cp.async writes hit distinct bank groups.
// Pipeline per warp: tiles i = 0, 1, ... of this warp are keys key_begin + (i NW + warp) 16 .. +15. The first
// kStages - 1 tiles are issued before the (dependent) length arrives, bounded by the host's chunk; later ones
// by the length. Iteration i waits for tile i (cp.async.wait_group), issues tile i + kStages - 1 into the slot
// consumed in iteration i - 1 (a __syncwarp orders the two), then reads tile i's fragments from shared memory;
// V rows past the length are zeroed in registers (the first tiles may hold anything there) and K's scores masked.
// Launch: grid (num_splits, Hkv * ceil(G / 16), B), kMmaWarps warps, dynamic shared memory mma_smem_bytes<D>()
// (the ring; reused for the warps' partial accumulators at the end).
template <int D>
struct MmaRing {
  static constexpr int kTileKeys = 16;
  static constexpr int kRowBytes = D * 2;                         // fp16 / bf16 row
  static constexpr int kTileBytes = 2 * kTileKeys * kRowBytes;    // K and V
  static constexpr int kRingBytes = 96 * 1024;                    // per block: two blocks fit an SM's 228 KB
  // The ring starts on a 128-byte boundary (see the kernel's first lines): the dynamic allocation is this much
  // larger than the ring.
  static constexpr int kAlignBytes = 128;
  static constexpr int kStages = kRingBytes / (kMmaWarps * kTileBytes);  // D = 128: 3, D = 64: 6
  static_assert(kStages >= 2, "the ring needs two tiles per warp");
  static_assert(kMmaWarps * kMmaRows * (D + 1) * 4 <= kRingBytes, "the partial accumulators reuse the ring");
};

template <int D>
constexpr int mma_smem_bytes() { return MmaRing<D>::kRingBytes + MmaRing<D>::kAlignBytes; }

// Chunk permutation of key row k (see the ring layout above): XOR with bits (k & 1) << 2 and k & 6.
__device__ __forceinline__ int ring_swizzle(int key) { return ((key & 1) << 2) ^ (key & 6); }

__device__ __forceinline__ void cp_async_16(uint32_t smem_addr, const void* src, bool valid) {
  // src-size 0 (invalid) reads nothing and fills the 16 bytes with zeros.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}
// "memory" clobbers: the compiler must not move shared-memory accesses across the copies, commits and waits.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// Issues one warp tile (keys base .. base + 15, those at or past `bound` zero-filled) into ring slot `slot_addr`,
// then commits the group (an empty group when the whole tile is past the bound, so that group i is tile i).
// Lane l copies chunk c = l % (D / 8) of keys l / (D / 8) + k * (256 / D) (k = 0, 1, ...) of K and of V: each
// instruction moves 512 contiguous bytes, and the only per-tile address arithmetic is the tile's base.
template <typename T, int D>
__device__ __forceinline__ void ring_issue(uint32_t slot_addr, const T* k_base, const T* v_base, int base, int bound,
                                            int lane) {
  using A = MmaRing<D>;
  constexpr int kChunksPerRow = D / 8;
  constexpr int kRowsPerCopy = 32 / kChunksPerRow;  // key rows one warp-wide copy covers
  constexpr int kCopies = A::kTileKeys / kRowsPerCopy;
  const int key0 = lane / kChunksPerRow;
  const int c = lane % kChunksPerRow;
  const size_t offset = static_cast<size_t>(base + key0) * D + c * 8;
  const T* k_src = k_base + offset;
  const T* v_src = v_base + offset;
  auto dst = [&](int i) {
    const int key = key0 + i * kRowsPerCopy;
    return slot_addr + key * A::kRowBytes + ((c ^ ring_swizzle(key)) * 16);
  };
  if (base + A::kTileKeys <= bound) {  // a whole tile: constant offsets from one base, no tests
#pragma unroll
    for (int i = 0; i < kCopies; ++i) {
      cp_async_16(dst(i), k_src + i * kRowsPerCopy * D, true);
      cp_async_16(dst(i) + A::kTileKeys * A::kRowBytes, v_src + i * kRowsPerCopy * D, true);
    }
  } else if (base < bound) {
#pragma unroll
    for (int i = 0; i < kCopies; ++i) {
      const bool valid = base + key0 + i * kRowsPerCopy < bound;
      // An invalid copy reads nothing (src-size 0); its address is the (valid) first row.
      cp_async_16(dst(i), valid ? k_src + i * kRowsPerCopy * D : k_base, valid);
      cp_async_16(dst(i) + A::kTileKeys * A::kRowBytes, valid ? v_src + i * kRowsPerCopy * D : v_base, valid);
    }
  }
  cp_async_commit();
}

// One warp step's fragments (MmaLoads) read from a ring slot; with kMasked, V rows of keys at or past key_end are
// zeroed (the first tiles may hold anything there; K's scores are masked by mma_consume).
template <int D, bool kMasked>
__device__ __forceinline__ void ring_fill(MmaLoads<D>& x, const unsigned char* slot, int base, int key_end, int r,
                                           int t) {
  using A = MmaRing<D>;
  const unsigned char* k_tile = slot;
  const unsigned char* v_tile = slot + A::kTileKeys * A::kRowBytes;
#pragma unroll
  for (int tile = 0; tile < 2; ++tile) {
    const int key = 8 * tile + r;
#pragma unroll
    for (int j = 0; j < D / 32; ++j) {
      x.k[tile][j] = *reinterpret_cast<const uint4*>(k_tile + key * A::kRowBytes + (((4 * j + t) ^ ring_swizzle(key)) * 16));
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int key = 2 * t + (i & 1) + 8 * (i >> 1);
    const bool live = !kMasked || base + key < key_end;
#pragma unroll
    for (int j = 0; j < D / 64; ++j) {
      const uint4 v = *reinterpret_cast<const uint4*>(v_tile + key * A::kRowBytes + (((8 * j + r) ^ ring_swizzle(key)) * 16));
      x.v[i][j] = live ? v : make_uint4(0, 0, 0, 0);
    }
  }
}

template <typename T, int D, int NW = kMmaWarps>
__global__ void __launch_bounds__(NW * 32)
fa2_decode_mma_kernel(const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                            const int* __restrict__ seq_lens, T* __restrict__ out, float* __restrict__ partial_out,
                            float* __restrict__ partial_lse, int* __restrict__ counters, int q_heads, int kv_heads,
                            int max_seq, float scale_log2, int num_splits, int chunk, int kv_shared,
                            int programmatic) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  static_assert(D % 64 == 0 && D <= 128, "tensor-core path: D = 64 or 128");
  using A = MmaRing<D>;
  constexpr int S = A::kStages;
  const BlockWork<T> w = block_work<kMmaRows, D>(k_cache, v_cache, q_heads, kv_heads, max_seq, num_splits, chunk,
                                                 kv_shared);
  const int b = w.b, head0 = w.head0, heads_here = w.heads_here, key_begin = w.key_begin, key_stop = w.key_stop;
  const T* k_base = w.k_base;
  const T* v_base = w.v_base;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int r = lane >> 2;
  const int t = lane & 3;

  // The ring on a 128-byte boundary: the block's static shared memory (s_m, s_l, the merge flag) is placed before
  // the dynamic allocation, whose base is then only 16-byte aligned. With the ring 16 bytes off a 128-byte line,
  // every cp.async of a quarter warp (128 contiguous global bytes) straddles two shared-memory lines and went to
  // L2 as two requests: ncu on Llama-3.1-8B's shape at 65536 keys counted 3x the L2 requests of a plain copy,
  // every sector read twice (50% L2 hits), and the kernel took 80.5 us against 66.0 us aligned
  // (bench/results/experiments_fourteenth_session/README.md).
  extern __shared__ __align__(16) unsigned char mma_smem_raw[];
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(mma_smem_raw));
  unsigned char* mma_smem = mma_smem_raw + ((A::kAlignBytes - (raw_addr % A::kAlignBytes)) % A::kAlignBytes);
  unsigned char* ring = mma_smem + warp * S * A::kTileBytes;
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  auto tile_base = [&](int i) { return key_begin + (i * NW + warp) * A::kTileKeys; };

  // Programmatic launch: nothing is read before the wait (the ring's first tiles are bounded by the host's chunk,
  // not by the length, so they may include the row the previous kernel writes).
  if (programmatic) pdl_wait();
  // The first S - 1 tiles go out before the length is known, bounded by the host's chunk.
#pragma unroll
  for (int i = 0; i < S - 1; ++i) ring_issue<T, D>(ring_addr + i * A::kTileBytes, k_base, v_base, tile_base(i), key_stop, lane);

  uint32_t qa[D / 16][4];
#pragma unroll
  for (int j = 0; j < D / 32; ++j) {
    const T* row_lo = q + (static_cast<size_t>(b) * q_heads + head0 + r) * D + 32 * j + 8 * t;
    const uint4 lo = r < heads_here ? __ldcg(reinterpret_cast<const uint4*>(row_lo)) : make_uint4(0, 0, 0, 0);
    const uint4 hi = r + 8 < heads_here ? __ldcg(reinterpret_cast<const uint4*>(row_lo + 8 * D)) : make_uint4(0, 0, 0, 0);
    qa[2 * j][0] = lo.x;
    qa[2 * j][1] = hi.x;
    qa[2 * j][2] = lo.y;
    qa[2 * j][3] = hi.y;
    qa[2 * j + 1][0] = lo.z;
    qa[2 * j + 1][1] = hi.z;
    qa[2 * j + 1][2] = lo.w;
    qa[2 * j + 1][3] = hi.w;
  }

  int len = __ldcg(seq_lens + b);
  len = len < 0 ? 0 : (len > max_seq ? max_seq : len);
  const int key_end = min(len, key_stop);

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

  MmaLoads<D> x;
  int slot = 0;  // ring slot of tile i
  for (int i = 0; tile_base(i) < key_end; ++i) {
    cp_async_wait<S - 2>();  // tile i has landed (this lane's copies) ...
    __syncwarp();            // ... and every lane's; every lane is also done reading slot i - 1
    const int refill = slot == 0 ? S - 1 : slot - 1;
    ring_issue<T, D>(ring_addr + refill * A::kTileBytes, k_base, v_base, tile_base(i + S - 1), key_end, lane);
    if (tile_base(i) + A::kTileKeys <= key_end) {  // a whole tile: no per-key tests
      ring_fill<D, false>(x, ring + slot * A::kTileBytes, tile_base(i), key_end, r, t);
      mma_consume<T, D, false>(x, qa, tile_base(i), key_end, t, scale_log2, m, l, o);
    } else {
      ring_fill<D, true>(x, ring + slot * A::kTileBytes, tile_base(i), key_end, r, t);
      mma_consume<T, D, true>(x, qa, tile_base(i), key_end, t, scale_log2, m, l, o);
    }
    slot = slot == S - 1 ? 0 : slot + 1;
  }
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    l[row] += __shfl_xor_sync(0xffffffffu, l[row], 1);
    l[row] += __shfl_xor_sync(0xffffffffu, l[row], 2);
  }

  // Tiles issued past the length before it was known may still be landing: drain them, and let every warp leave
  // its ring before the ring becomes the partial accumulators.
  cp_async_wait<0>();
  __syncthreads();
  __shared__ float s_m[NW][kMmaRows];
  __shared__ float s_l[NW][kMmaRows];
  // [NW][kMmaRows] rows of D + 1 floats: the padding spreads the stores below over 16 banks (2-way conflicts;
  // with rows of D floats the 8 rows x 4 column groups of a store fell on 2 banks). Measured on an H200
  // (bench/results/experiments_eleventh_session/README.md): the block's end 0.5-1.5 us shorter, Qwen2.5-1.5B at
  // 16384 keys 19.6 -> 17.7 us.
  constexpr int kAccStride = D + 1;
  float* s_acc = reinterpret_cast<float*>(mma_smem);
  if (t == 0) {
    s_m[warp][r] = m[0];
    s_m[warp][r + 8] = m[1];
    s_l[warp][r] = l[0];
    s_l[warp][r + 8] = l[1];
  }
#pragma unroll
  for (int j = 0; j < D / 64; ++j) {
#pragma unroll
    for (int u = 0; u < 8; ++u) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = r + 8 * (e >> 1);
        const int d = 64 * j + 8 * (2 * t + (e & 1)) + u;
        s_acc[(warp * kMmaRows + row) * kAccStride + d] = o[8 * j + u][e];
      }
    }
  }
  __syncthreads();
  finish_block<T, D, NW, kMmaRows, kAccStride>(&s_m[0][0], &s_l[0][0], s_acc, heads_here, b, q_heads, head0,
                                               num_splits, out, partial_out, partial_lse, counters);
#endif
}

// Instantiations: entry point, block size, dynamic shared memory, the variant's heads per block.
template <typename T, int D, int HPB>
Fa2Kernel simt_choice() {
  constexpr int NW = warps_for(D, HPB);
  return {reinterpret_cast<const void*>(&fa2_decode_kernel<T, D, HPB>), NW * 32, 0, Fa2Variant::Simt, HPB,
          reinterpret_cast<const void*>(&fa2_merge_kernel<T, D>)};
}

template <typename T, int D>
Fa2Kernel mma_choice() {
  if constexpr (std::is_same_v<T, float> || (D != 64 && D != 128)) {
    return {};  // no tensor-core instantiation (fp32 storage, or a head dim other than 64 / 128)
  } else {
    return {reinterpret_cast<const void*>(&fa2_decode_mma_kernel<T, D>), kMmaWarps * 32, mma_smem_bytes<D>(),
            Fa2Variant::TensorCore, kMmaRows, reinterpret_cast<const void*>(&fa2_merge_kernel<T, D>)};
  }
}

template <typename T, int D>
Fa2Kernel choice_for_heads(int hpb, Fa2Variant variant) {
  if (variant == Fa2Variant::TensorCore) return mma_choice<T, D>();
  switch (hpb) {
    case 1: return simt_choice<T, D, 1>();
    case 2: return simt_choice<T, D, 2>();
    case 4: return simt_choice<T, D, 4>();
    default: return simt_choice<T, D, 8>();
  }
}

template <typename T>
Fa2Kernel choice_for_dim(int head_dim, int hpb, Fa2Variant variant) {
  switch (head_dim) {
    case 64: return choice_for_heads<T, 64>(hpb, variant);
    case 80: return choice_for_heads<T, 80>(hpb, variant);
    case 96: return choice_for_heads<T, 96>(hpb, variant);
    case 128: return choice_for_heads<T, 128>(hpb, variant);
    default: return choice_for_heads<T, 256>(hpb, variant);
  }
}

// One per storage type, each defined in its own translation unit; fn is null where the variant has no
// instantiation.
Fa2Kernel kernel_f16(int head_dim, int hpb, Fa2Variant variant);
Fa2Kernel kernel_bf16(int head_dim, int hpb, Fa2Variant variant);
Fa2Kernel kernel_f32(int head_dim, int hpb, Fa2Variant variant);

}  // namespace edgellm::cuda::fa2_detail
