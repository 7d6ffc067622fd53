// FA2 decode attention (GQA, split-KV) and KV append; see fa2_decode.h for the math, layouts and launch shape.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "fa2_decode.h"

namespace edgellm::cuda {
namespace {

constexpr int kKeysPerGroupStep = 4;  // keys each lane group loads per step (loads in flight)
constexpr int kMaxHeadsPerBlock = 8;
constexpr int kMaxSplits = 128;       // bounds the merge's shared-memory weight table
constexpr int kShortContextKeys = 8192;  // fa2_default_heads_per_block's crossover
constexpr int kMinStepsPerSplit = 4;     // fa2_default_num_splits: least work per split
constexpr float kLog2e = 1.4426950408889634f;

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
  // P @ V: each V row is converted once and used by every head of the group.
#pragma unroll
  for (int u = 0; u < KT; ++u) {
    float vf[E];
#pragma unroll
    for (int i = 0; i < G::kVecsPerLane; ++i) unpack(v_raw[u][i], vf + i * G::kVecElems, tag);
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
#pragma unroll
      for (int e = 0; e < E; ++e) acc[h][e] = fmaf(s[h][u], vf[e], acc[h][e]);
    }
  }
}

template <typename T, int D, int HPB, int NW = warps_for(D, HPB)>
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
  load_step<T, D, NW>(k_base, v_base, key_begin, key_stop, warp, key_group, lane_in_key, k_a, v_a);

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

  // Split weights exp2(lse_s - max) per head, normalised, computed once (warp per head) into shared memory.
  __shared__ float s_weight[HPB][kMaxSplits];
  for (int h = warp; h < heads_here; h += NW) {
    const size_t row0 = (bh0 + h) * num_splits;
    float mx = -INFINITY;
    for (int sp = lane; sp < num_splits; sp += 32) mx = fmaxf(mx, __ldcg(partial_lse + row0 + sp));
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, offset));
    float total = 0.0f;
    for (int sp = lane; sp < num_splits; sp += 32) {
      const float w = mx == -INFINITY ? 0.0f : exp2_safe(__ldcg(partial_lse + row0 + sp) - mx);
      s_weight[h][sp] = w;
      total += w;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(0xffffffffu, total, offset);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    __syncwarp();
    for (int sp = lane; sp < num_splits; sp += 32) s_weight[h][sp] *= inv;
  }
  __syncthreads();

  // Weighted sum of the partial outputs, 4 columns per thread per load.
  constexpr int kCols = D / 4;
  for (int idx = threadIdx.x; idx < heads_here * kCols; idx += kThreadsHere) {
    const int h = idx / kCols;
    const int c = idx % kCols;
    const float4* src = reinterpret_cast<const float4*>(partial_out + (bh0 + h) * num_splits * D) + c;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
    for (int sp = 0; sp < num_splits; ++sp) {
      const float w = s_weight[h][sp];
      const float4 p = __ldcg(src + static_cast<size_t>(sp) * kCols);
      o.x = fmaf(w, p.x, o.x);
      o.y = fmaf(w, p.y, o.y);
      o.z = fmaf(w, p.z, o.z);
      o.w = fmaf(w, p.w, o.w);
    }
    T* dst = out + (bh0 + h) * D + 4 * c;
    store(dst, o.x);
    store(dst + 1, o.y);
    store(dst + 2, o.z);
    store(dst + 3, o.w);
  }
}

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

int heads_per_block_for(int group_size) {
  if (group_size <= 1) return 1;
  if (group_size <= 2) return 2;
  if (group_size <= 4) return 4;
  return kMaxHeadsPerBlock;
}

int checked_heads_per_block(int requested, const Fa2DecodeShape& shape, int max_len_hint) {
  if (requested == 0) return fa2_default_heads_per_block(shape, max_len_hint);
  if (requested != 1 && requested != 2 && requested != 4 && requested != 8) {
    throw std::invalid_argument("heads_per_block: expected 0 (auto), 1, 2, 4 or 8, got " + std::to_string(requested));
  }
  return requested;
}

int keys_per_block_step(DType dtype, int head_dim, int heads_per_block) {
  const int vec_elems = 16 / itemsize(dtype);
  const int vecs = head_dim / vec_elems;
  const int lanes = next_pow2(vecs) < 32 ? next_pow2(vecs) : 32;
  return warps_for(head_dim, heads_per_block) * (32 / lanes) * kKeysPerGroupStep;
}

int current_multiprocessors() {
  int device = 0, sms = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// dtype x head_dim x heads-per-block -> kernel instantiation.
template <typename T, int D>
void launch_for_dim(int hpb, dim3 grid, cudaStream_t stream, const void* q, const void* k, const void* v,
                    const int* lens, void* out, float* po, float* plse, int* counters, const Fa2DecodeShape& s,
                    float scale_log2, int splits, int chunk) {
  auto go = [&](auto kernel, int threads) {
    kernel<<<grid, threads, 0, stream>>>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                                         lens, static_cast<T*>(out), po, plse, counters, s.q_heads, s.kv_heads,
                                         s.max_seq, scale_log2, splits, chunk, s.kv_shared ? 1 : 0);
  };
  switch (hpb) {
    case 1: go(fa2_decode_kernel<T, D, 1>, 32 * warps_for(D, 1)); break;
    case 2: go(fa2_decode_kernel<T, D, 2>, 32 * warps_for(D, 2)); break;
    case 4: go(fa2_decode_kernel<T, D, 4>, 32 * warps_for(D, 4)); break;
    default: go(fa2_decode_kernel<T, D, 8>, 32 * warps_for(D, 8)); break;
  }
}

template <typename T>
void launch_for_type(int head_dim, int hpb, dim3 grid, cudaStream_t stream, const void* q, const void* k,
                     const void* v, const int* lens, void* out, float* po, float* plse, int* counters,
                     const Fa2DecodeShape& s, float scale_log2, int splits, int chunk) {
  switch (head_dim) {
    case 64: launch_for_dim<T, 64>(hpb, grid, stream, q, k, v, lens, out, po, plse, counters, s, scale_log2, splits, chunk); break;
    case 80: launch_for_dim<T, 80>(hpb, grid, stream, q, k, v, lens, out, po, plse, counters, s, scale_log2, splits, chunk); break;
    case 96: launch_for_dim<T, 96>(hpb, grid, stream, q, k, v, lens, out, po, plse, counters, s, scale_log2, splits, chunk); break;
    case 128: launch_for_dim<T, 128>(hpb, grid, stream, q, k, v, lens, out, po, plse, counters, s, scale_log2, splits, chunk); break;
    default: launch_for_dim<T, 256>(hpb, grid, stream, q, k, v, lens, out, po, plse, counters, s, scale_log2, splits, chunk); break;
  }
}

}  // namespace

int fa2_default_heads_per_block(const Fa2DecodeShape& shape, int max_len) {
  validate(shape);
  // Measured on an H200 over the four model shapes and 64..65536 keys (bench/suites/kernels.py sweeps every
  // choice; bench/results/): one query head per block is fastest or within 5% up to 8192 keys (most blocks, least
  // work per thread; the re-reads of a K/V row by its group's heads hit L2); beyond that two heads per block win
  // (half the re-reads). Four or eight heads per block (each K/V row read once) lose everywhere: those threads
  // are instruction-bound (every head's dot product is reduced across lanes with shuffles).
  if (max_len <= kShortContextKeys) return 1;
  return heads_per_block_for(shape.q_heads / shape.kv_heads) >= 2 ? 2 : 1;
}

int fa2_default_num_splits(const Fa2DecodeShape& shape, int max_len, int multiprocessors, int heads_per_block) {
  validate(shape);
  const int group_size = shape.q_heads / shape.kv_heads;
  const int hpb = heads_per_block > 0 ? heads_per_block : fa2_default_heads_per_block(shape, max_len);
  const int blocks_without_split = shape.batch * shape.kv_heads * ((group_size + hpb - 1) / hpb);
  const int len = max_len < 1 ? 1 : (max_len > shape.max_seq ? shape.max_seq : max_len);
  // Two resident blocks per SM (see warps_for); floor, so that no second partial wave forms.
  const int for_occupancy = (2 * multiprocessors) / blocks_without_split;
  // A split costs ~2.5 us of merge latency (partials written, fence, counter, reads; measured on an H200), about
  // what a block needs for 4 steps of keys: split only when every split keeps at least that much work.
  const int min_keys = kMinStepsPerSplit * keys_per_block_step(shape.dtype, shape.head_dim, hpb);
  const int for_length = (len + min_keys - 1) / min_keys;
  int splits = for_occupancy < for_length ? for_occupancy : for_length;
  splits = splits > kMaxSplits ? kMaxSplits : splits;
  return splits < 1 ? 1 : splits;
}

Fa2DecodeOp::Fa2DecodeOp(const Fa2DecodeShape& shape, std::uintptr_t q, std::uintptr_t k_cache,
                         std::uintptr_t v_cache, std::uintptr_t seq_lens, std::uintptr_t out, float scale,
                         int max_len_hint, int num_splits, int heads_per_block)
    : shape_(validated(shape)),
      q_(reinterpret_cast<const void*>(q)),
      k_(reinterpret_cast<const void*>(k_cache)),
      v_(reinterpret_cast<const void*>(v_cache)),
      seq_lens_(reinterpret_cast<const int*>(seq_lens)),
      out_(reinterpret_cast<void*>(out)),
      scale_(scale),
      heads_per_block_(checked_heads_per_block(heads_per_block, shape, max_len_hint)),
      num_splits_(num_splits > 0 ? num_splits
                                 : fa2_default_num_splits(shape, max_len_hint, current_multiprocessors(),
                                                          heads_per_block_)),
      partial_out_(num_splits_ > 1 ? static_cast<std::size_t>(shape.batch) * shape.q_heads * num_splits_ *
                                         shape.head_dim * sizeof(float)
                                   : 0),
      partial_lse_(num_splits_ > 1 ? static_cast<std::size_t>(shape.batch) * shape.q_heads * num_splits_ * sizeof(float)
                                   : 0),
      counters_(num_splits_ > 1 ? static_cast<std::size_t>(shape.batch) * shape.q_heads * sizeof(int) : 0) {
  require_aligned(q, "q");
  require_aligned(k_cache, "k_cache");
  require_aligned(v_cache, "v_cache");
  require_aligned(out, "out");
  if (seq_lens == 0 || seq_lens % 4 != 0) throw std::invalid_argument("seq_lens: device pointer must be 4-byte aligned");
  if (!(scale > 0.0f) || !std::isfinite(scale)) throw std::invalid_argument("scale: expected a finite value > 0");
  if (num_splits_ > kMaxSplits) throw std::invalid_argument("num_splits: at most " + std::to_string(kMaxSplits));
  const int hint = max_len_hint < 1 ? 1 : (max_len_hint > shape.max_seq ? shape.max_seq : max_len_hint);
  chunk_ = (hint + num_splits_ - 1) / num_splits_;
  if (num_splits_ > 1) EDGELLM_CUDA_CHECK(cudaMemset(counters_.data(), 0, counters_.bytes()));
}

void Fa2DecodeOp::launch(cudaStream_t stream) {
  const int group_size = shape_.q_heads / shape_.kv_heads;
  const int chunks = (group_size + heads_per_block_ - 1) / heads_per_block_;
  const dim3 grid(num_splits_, shape_.kv_heads * chunks, shape_.batch);
  const float scale_log2 = scale_ * kLog2e;
  float* po = static_cast<float*>(partial_out_.data());
  float* plse = static_cast<float*>(partial_lse_.data());
  int* counters = static_cast<int*>(counters_.data());
  switch (shape_.dtype) {
    case DType::F16:
      launch_for_type<__half>(shape_.head_dim, heads_per_block_, grid, stream, q_, k_, v_, seq_lens_, out_, po, plse,
                              counters, shape_, scale_log2, num_splits_, chunk_);
      break;
    case DType::BF16:
      launch_for_type<__nv_bfloat16>(shape_.head_dim, heads_per_block_, grid, stream, q_, k_, v_, seq_lens_, out_, po,
                                     plse, counters, shape_, scale_log2, num_splits_, chunk_);
      break;
    case DType::F32:
      launch_for_type<float>(shape_.head_dim, heads_per_block_, grid, stream, q_, k_, v_, seq_lens_, out_, po, plse,
                             counters, shape_, scale_log2, num_splits_, chunk_);
      break;
  }
  EDGELLM_CUDA_CHECK_LAUNCH("fa2_decode_kernel");
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
