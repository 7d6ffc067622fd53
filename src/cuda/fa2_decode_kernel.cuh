// FA2 decode attention kernel (device code shared by the per-storage-type translation units
// fa2_decode_{f16,bf16,f32}.cu, which instantiate it; the host side is fa2_decode.cu). Math, layouts and launch
// shape: fa2_decode.h. Split into one translation unit per storage type so that the 80 instantiations of each
// compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#include <cstddef>

#include "fa2_decode.h"

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
  static constexpr int kStageVecs = kKeysPerBlockStep * kVecsPerRow;  // 16-byte vectors per tensor per stage
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

// exp2 that maps -inf to 0 without NaN from (-inf) - (-inf): callers pass differences against a finite max or
// guard the all-empty case.
__device__ __forceinline__ float exp2_safe(float x) { return x == -INFINITY ? 0.0f : exp2f(x); }

// Warps per block: 8 for one or two heads per block; 4 for 4 or 8 heads, whose threads need ~190-255 registers
// (ptxas -v): at 8 warps only one such block fits an SM's 64K registers, at 4 warps two do. 4 warps also keep the
// partial accumulators of D = 256 within 32 KB of shared memory.
constexpr int warps_for(int head_dim, int heads_per_block) {
  return heads_per_block >= 4 || head_dim * heads_per_block * 8 * 4 > 32768 ? 4 : 8;
}

// Loads one step of keys (KT per lane group) of K and V into registers; keys at or beyond `key_end` read nothing.
template <typename T, int D, int NW>
__device__ __forceinline__ void load_step(const T* k_base, const T* v_base, int step, int key_end, int warp,
                                          int key_group, int lane_in_key,
                                          uint4 (&k_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                          uint4 (&v_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane]) {
  using G = Geometry<T, D, NW>;
#pragma unroll
  for (int u = 0; u < kKeysPerGroupStep; ++u) {
    const int key = step + u * NW * G::kGroupsPerWarp + warp * G::kGroupsPerWarp + key_group;
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) {
      const int vec = lane_in_key + i * G::kLanesPerKey;
      k_raw[u][i] = make_uint4(0, 0, 0, 0);
      v_raw[u][i] = make_uint4(0, 0, 0, 0);
      if (key < key_end && vec < G::kVecsPerRow) {
        const size_t off = static_cast<size_t>(key) * D + vec * G::kVecElems;
        k_raw[u][i] = __ldg(reinterpret_cast<const uint4*>(k_base + off));
        v_raw[u][i] = __ldg(reinterpret_cast<const uint4*>(v_base + off));
      }
    }
  }
}

// Shared-memory pipeline (kv_stages >= 2): one stage holds one block step of keys, K then V, each a contiguous
// [kKeysPerBlockStep][kVecsPerRow] tile of 16-byte vectors copied straight from the cache (keys are contiguous
// rows), so a stage is one linear copy spread over the block's threads.

// Issues the asynchronous copies of one block step of keys, [key0, key0 + kKeysPerBlockStep), into a stage and
// commits them as one group; keys at or beyond `bound` are zero-filled without reading memory. Every thread
// commits a group (possibly empty) so that group counting stays uniform.
template <typename T, int D, int NW>
__device__ __forceinline__ void issue_stage(uint4* s_k, uint4* s_v, const T* k_base, const T* v_base, int key0,
                                            int bound) {
  using G = Geometry<T, D, NW>;
  constexpr int kVecs = G::kStageVecs;
  const uint4* gk = reinterpret_cast<const uint4*>(k_base);
  const uint4* gv = reinterpret_cast<const uint4*>(v_base);
  const size_t first = static_cast<size_t>(key0) * G::kVecsPerRow;
#pragma unroll
  for (int j = threadIdx.x; j < kVecs; j += NW * 32) {
    const bool inside = key0 + j / G::kVecsPerRow < bound;
    const size_t src = inside ? first + j : 0;  // an outside copy reads nothing (zero fill); keep its address valid
    __pipeline_memcpy_async(s_k + j, gk + src, 16, inside ? 0 : 16);
    __pipeline_memcpy_async(s_v + j, gv + src, 16, inside ? 0 : 16);
  }
  __pipeline_commit();
}

// Reads this lane's vectors of one stage (the same key mapping as load_step) into registers.
template <typename T, int D, int NW>
__device__ __forceinline__ void read_stage(const uint4* s_k, const uint4* s_v, int warp, int key_group,
                                           int lane_in_key,
                                           uint4 (&k_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane],
                                           uint4 (&v_raw)[kKeysPerGroupStep][Geometry<T, D, NW>::kVecsPerLane]) {
  using G = Geometry<T, D, NW>;
#pragma unroll
  for (int u = 0; u < kKeysPerGroupStep; ++u) {
    const int key = u * NW * G::kGroupsPerWarp + warp * G::kGroupsPerWarp + key_group;
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) {
      const int vec = lane_in_key + i * G::kLanesPerKey;
      k_raw[u][i] = make_uint4(0, 0, 0, 0);
      v_raw[u][i] = make_uint4(0, 0, 0, 0);
      if (vec < G::kVecsPerRow) {
        k_raw[u][i] = s_k[key * G::kVecsPerRow + vec];
        v_raw[u][i] = s_v[key * G::kVecsPerRow + vec];
      }
    }
  }
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
    const float correction = m_new == -INFINITY ? 1.0f : exp2_safe(m[h] - m_new);
    float p_sum = 0.0f;
#pragma unroll
    for (int u = 0; u < KT; ++u) {
      s[h][u] = m_new == -INFINITY ? 0.0f : exp2_safe(s[h][u] - m_new);
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

template <typename T, int D, int HPB, int STAGES, int NW = warps_for(D, HPB)>
__global__ void __launch_bounds__(NW * 32)
fa2_decode_kernel(const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                  const int* __restrict__ seq_lens, T* __restrict__ out, float* __restrict__ partial_out,
                  float* __restrict__ partial_lse, int* __restrict__ counters, int q_heads, int kv_heads,
                  int max_seq, float scale_log2, int num_splits, int chunk, int kv_shared) {
  using G = Geometry<T, D, NW>;
  constexpr int E = G::kElemsPerLane;
  constexpr int TPK = G::kLanesPerKey;
  constexpr int KT = kKeysPerGroupStep;
  constexpr int kThreadsHere = NW * 32;
  constexpr int kStep = G::kKeysPerBlockStep;

  const int split = blockIdx.x;
  const int b = blockIdx.z;
  const int group_size = q_heads / kv_heads;
  const int chunks_per_kv_head = (group_size + HPB - 1) / HPB;
  const int kv_head = blockIdx.y / chunks_per_kv_head;
  const int head0 = kv_head * group_size + (blockIdx.y % chunks_per_kv_head) * HPB;
  const int heads_here = min(HPB, kv_head * group_size + group_size - head0);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int key_group = lane / TPK;  // which of the warp's keys this lane works on
  const int lane_in_key = lane % TPK;

  const int cache_b = kv_shared ? 0 : b;  // kv_shared: every query of the batch reads one cache (a prefill chunk)
  const size_t head_offset = (static_cast<size_t>(cache_b) * kv_heads + kv_head) * static_cast<size_t>(max_seq) * D;
  const T* k_base = k_cache + head_offset;
  const T* v_base = v_cache + head_offset;

  // The chunk comes from the host (fixed per op), so the first step's loads go out before the sequence length
  // (a dependent load) arrives; the length then masks them.
  const int key_begin = min(max_seq, split * chunk);
  // The last split runs to max_seq, so a length above the host's hint is still covered (only slower).
  const int key_stop = split == num_splits - 1 ? max_seq : min(max_seq, key_begin + chunk);
  uint4 k_a[KT][G::kVecsPerLane], v_a[KT][G::kVecsPerLane];
  uint4 k_b[KT][G::kVecsPerLane], v_b[KT][G::kVecsPerLane];
  extern __shared__ uint4 s_kv[];  // staged: [STAGES] K stages, then [STAGES] V stages
  constexpr int kStageVecs = G::kStageVecs;
  uint4* s_k = s_kv;
  uint4* s_v = s_kv + STAGES * kStageVecs;
  if constexpr (STAGES > 0) {
    issue_stage<T, D, NW>(s_k, s_v, k_base, v_base, key_begin, key_stop);
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
        unpack(*reinterpret_cast<const uint4*>(src), f, src);
      }
#pragma unroll
      for (int e = 0; e < G::kVecElems; ++e) q_reg[h][i * G::kVecElems + e] = f[e] * scale_log2;
    }
  }

  int len = seq_lens[b];
  len = len < 0 ? 0 : (len > max_seq ? max_seq : len);
  const int key_end = min(len, key_stop);

  float m[HPB], l[HPB], acc[HPB][E];
#pragma unroll
  for (int h = 0; h < HPB; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[h][e] = 0.0f;
  }

  if constexpr (STAGES > 0) {
    // STAGES - 1 steps in flight: step i waits for its own group, the barrier makes it visible to the block and
    // frees the stage consumed at step i - 1, which then receives step i + STAGES - 1.
#pragma unroll
    for (int st = 1; st < STAGES - 1; ++st) {
      issue_stage<T, D, NW>(s_k + st * kStageVecs, s_v + st * kStageVecs, k_base, v_base, key_begin + st * kStep,
                            key_end);
    }
    int read = 0, write = STAGES - 1;
    for (int step = key_begin; step < key_end; step += kStep) {
      __pipeline_wait_prior(STAGES - 2);
      __syncthreads();
      issue_stage<T, D, NW>(s_k + write * kStageVecs, s_v + write * kStageVecs, k_base, v_base,
                            step + (STAGES - 1) * kStep, key_end);
      read_stage<T, D, NW>(s_k + read * kStageVecs, s_v + read * kStageVecs, warp, key_group, lane_in_key, k_a, v_a);
      consume_step<T, D, NW, HPB>(k_base, step, key_end, warp, key_group, q_reg, k_a, v_a, m, l, acc);
      read = read == STAGES - 1 ? 0 : read + 1;
      write = write == STAGES - 1 ? 0 : write + 1;
    }
    __pipeline_wait_prior(0);  // the trailing groups only zero-fill; nothing may be in flight at exit
  }
  // Two register buffers: the next step's loads are in flight while the current step is consumed.
  for (int step = key_begin; STAGES == 0 && step < key_end; step += 2 * kStep) {
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
      const float c_self = m_new == -INFINITY ? 0.0f : exp2_safe(m[h] - m_new);
      const float c_other = m_new == -INFINITY ? 0.0f : exp2_safe(m_other - m_new);
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

  const size_t bh0 = static_cast<size_t>(b) * q_heads + head0;  // first (sequence, head) row of this block
  for (int idx = threadIdx.x; idx < heads_here * D; idx += kThreadsHere) {
    const int h = idx / D;
    const int d = idx % D;
    float block_max = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w) block_max = fmaxf(block_max, s_m[w][h]);
    float sum = 0.0f, o = 0.0f;
    if (block_max != -INFINITY) {
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float c = exp2_safe(s_m[w][h] - block_max);
        sum += s_l[w][h] * c;
        o += s_acc[w][h][d] * c;
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
  if (num_splits == 1) return;

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
  for (int idx = threadIdx.x; idx < heads_here * kCols; idx += kThreadsHere) {
    const int h = idx / kCols;
    const int c = idx % kCols;
    const size_t row0 = (bh0 + h) * num_splits;
    const float4* src = reinterpret_cast<const float4*>(partial_out + row0 * D) + c;
    float mx = -INFINITY, total = 0.0f;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (int sp = 0; sp < num_splits; ++sp) {
      const float lse = __ldcg(partial_lse + row0 + sp);
      const float4 p = __ldcg(src + static_cast<size_t>(sp) * kCols);
      if (lse == -INFINITY) continue;  // an empty split (no keys in its range)
      const float m_new = fmaxf(mx, lse);
      const float c_old = exp2_safe(mx - m_new);
      const float w = exp2f(lse - m_new);
      total = total * c_old + w;
      o.x = fmaf(w, p.x, o.x * c_old);
      o.y = fmaf(w, p.y, o.y * c_old);
      o.z = fmaf(w, p.z, o.z * c_old);
      o.w = fmaf(w, p.w, o.w * c_old);
      mx = m_new;
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    T* dst = out + (bh0 + h) * D + 4 * c;
    store(dst, o.x * inv);
    store(dst + 1, o.y * inv);
    store(dst + 2, o.z * inv);
    store(dst + 3, o.w * inv);
  }
}

// Instantiation for (storage type, head dim, heads per block, pipeline stages): entry point, block size,
// dynamic shared memory.
template <typename T, int D, int HPB, int S>
Fa2Kernel choice() {
  constexpr int NW = warps_for(D, HPB);
  return {reinterpret_cast<const void*>(&fa2_decode_kernel<T, D, HPB, S>), NW * 32, S * 2 * Geometry<T, D, NW>::kStageVecs * 16, S};
}

template <typename T, int D, int HPB>
Fa2Kernel choice_for_stages(int stages) {
  switch (stages) {
    case 0: return choice<T, D, HPB, 0>();
    case 2: return choice<T, D, HPB, 2>();
    case 3: return choice<T, D, HPB, 3>();
    default: return choice<T, D, HPB, 4>();
  }
}

template <typename T, int D>
Fa2Kernel choice_for_heads(int hpb, int stages) {
  switch (hpb) {
    case 1: return choice_for_stages<T, D, 1>(stages);
    case 2: return choice_for_stages<T, D, 2>(stages);
    case 4: return choice_for_stages<T, D, 4>(stages);
    default: return choice_for_stages<T, D, 8>(stages);
  }
}

template <typename T>
Fa2Kernel choice_for_dim(int head_dim, int hpb, int stages) {
  switch (head_dim) {
    case 64: return choice_for_heads<T, 64>(hpb, stages);
    case 80: return choice_for_heads<T, 80>(hpb, stages);
    case 96: return choice_for_heads<T, 96>(hpb, stages);
    case 128: return choice_for_heads<T, 128>(hpb, stages);
    default: return choice_for_heads<T, 256>(hpb, stages);
  }
}

// One per storage type, each defined in its own translation unit.
Fa2Kernel kernel_f16(int head_dim, int hpb, int stages);
Fa2Kernel kernel_bf16(int head_dim, int hpb, int stages);
Fa2Kernel kernel_f32(int head_dim, int hpb, int stages);

}  // namespace edgellm::cuda::fa2_detail
