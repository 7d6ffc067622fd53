// Quantized GEMV building blocks shared by the GPU engine's kernels (gpu_engine.cu: one kernel per GEMV, in a
// CUDA graph; gpu_persistent.cu: every GEMV of a step inside one persistent kernel).
//
// A GEMV here is split in two device functions so that a caller can overlap a GEMV's first weight loads with
// whatever precedes it: gemv_prefetch() loads the first batch of this block's first row pair into registers, with
// the RmsNorm weights and the RoPE epilogue's inputs (it reads nothing a step writes), gemv_compute() builds the
// Q8_1 activation from the prologue's
// source and runs the dot products and the epilogue. Both are called by every thread of a block of WARPS warps.
#pragma once

#include <cuda_fp16.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "pdl.cuh"

namespace edgellm::cuda::gemv_q8 {

// Loads of activations (x, o, act, the position): COHERENT when other blocks of the same launch may have written
// them (the persistent kernel: __ldcg reads L2, never a stale L1 line); plain loads otherwise (a kernel reading
// what earlier kernels wrote: measured 8% faster for the whole graph step than __ldcg on the H200).
template <bool COHERENT, class T>
__device__ __forceinline__ T load_act(const T* p) {
  if constexpr (COHERENT) return __ldcg(p);
  return *p;
}

constexpr int kQK = 32;           // elements per ggml block (Q4_0, Q4_1, Q8_0) and per Q8_1 activation block
constexpr int kTypeQ4_0 = 2, kTypeQ4_1 = 3, kTypeQ8_0 = 8;
// fp16 weights (ggml's F16 id): rows of plain binary16, multiplied with f32 activations (no Q8_1 quantization).
// The engine stores every matrix the file does not hold as Q4_0/Q4_1/Q8_0 this way (gpu_engine.h).
constexpr int kTypeF16 = 1;
constexpr int kItemsPerWarp = 48; // K split: a row pair is spread over enough warps that each has <= 48 items
constexpr int kMaxK = 16384;      // largest GEMV input (shared memory: gemv_smem_bytes)

// Bytes per 32 elements of a row (0: a type the GEMV does not run).
__host__ __device__ constexpr int block_bytes(int type) {
  return type == kTypeQ4_0 ? 18 : (type == kTypeQ4_1 ? 20 : (type == kTypeQ8_0 ? 34 : (type == kTypeF16 ? 64 : 0)));
}
// The activation form a weight type multiplies with: f32 values (fp16 weights) or Q8_1 blocks (quantized weights).
__host__ __device__ constexpr bool float_activations(int type) { return type == kTypeF16; }

// Element i of a quantized row (the embedding lookup), as ggml dequantizes it.
__device__ inline float dequant(const std::uint8_t* row, int type, int i) {
  if (type == kTypeF16) return __half2float(reinterpret_cast<const __half*>(row)[i]);
  const int blk = i / kQK, j = i % kQK;
  if (type == kTypeQ8_0) {
    const std::uint8_t* b = row + blk * 34;
    return __half2float(*reinterpret_cast<const __half*>(b)) * static_cast<float>(static_cast<std::int8_t>(b[2 + j]));
  }
  const std::uint8_t* b = row + blk * block_bytes(type);
  const std::uint8_t byte = b[(type == kTypeQ4_1 ? 4 : 2) + (j & 15)];
  const int nib = j < 16 ? (byte & 15) : (byte >> 4);
  const float d = __half2float(*reinterpret_cast<const __half*>(b));
  if (type == kTypeQ4_0) return static_cast<float>(nib - 8) * d;
  const float m = __half2float(*reinterpret_cast<const __half*>(b + 2));
  return __fadd_rn(__fmul_rn(static_cast<float>(nib), d), m);  // ggml: x * d + m, not fused
}

// ------------------------------------------------------------------------------------------------ the GEMV
// Math: out = W a for up to three matrices ("segments") that share one input activation a of K elements.
// Prologue (per block, into shared memory): a = rmsnorm(x) * g (f32 x), or a = o (fp16), or a = act (f32), then
// quantized to Q8_1 as the CPU engine does: per 32 elements d = amax/127 (kept as f16), q = rint(a * 127/amax),
// s = f16(d * sum q). fp16 weights (kTypeF16) take a itself (f32 in shared memory) instead, as the CPU engine's
// float matvec does: out = sum_i float(w_i) * a_i, fp32 FMAs; so do quantized weights with FLOAT_ACT (the
// engine's f32-activation option): per 8 weights of a block d * sum(q_i a_i) (+ m * sum a_i for Q4_1; q - 8 for
// Q4_0), i.e. the weights dequantized as ggml does, without rounding the activations to 8 bits.
// Work split: a group of ksplit warps (1, 2, 4, ...: the fewest that leave each warp <= 48 items of a row) owns
// one row pair; block i of n holds WARPS / ksplit groups and takes pairs i * groups + g (+ n * groups per further
// round). A pair is two output rows that the epilogue needs together (two adjacent rows; a gate row and its up
// row; a RoPE pair). The K/32 blocks of a row are split in quarters ("items", 8 weights: one 32-bit word of Q4
// nibbles or two of Q8 bytes); group lane l (0 .. 32 ksplit - 1) takes items l, l + 32 ksplit, ...; the 4 lanes
// of one block sum their integer dot products with two shuffles, so that each block contributes
// (d_w * d_x) * sumi (+ m_w * s_x) exactly as on the CPU; the lanes' float sums are reduced by shuffles, then
// across the group's warps through shared memory.
// Why so many warps for so little data: a decode GEMV of SmolLM2 is 0.1-0.6 MB, so the time is the latency of a
// chain of dependent instructions, not bandwidth; ncu showed 1 warp per scheduler issuing every ~6 cycles with
// one warp per pair. Splitting K shortens each warp's chain.
// TYPE: the ggml type of every segment, or 0 for mixed quantized segments (a per-row switch; kTypeF16 is never
// mixed with the quantized types in one GEMV).
// Shared memory: gemv_smem_bytes(K, WARPS, NT, float act) (one token: 5 K + K / 4 bytes + 12 per warp, 84 KiB at
// K = 16384; NT tokens: NT (K + K / 4) bytes + (4 + 8 NT) per warp; f32 activations: 4 NT K + (4 + 8 NT) per warp).
enum class Prologue { RmsNorm, F16, F32 };
// StoreArgmax: the LM head's epilogue (both step modes): stores the logits, and each thread keeps the largest value
// it stored (its running argmax, reduced by the caller).
enum class Epilogue { AddResidual, SwiGlu, QkvRope, StoreArgmax };

struct Segment {
  const std::uint8_t* w = nullptr;
  int type = 0;
  int rows = 0;
  int row_bytes = 0;
};

struct GemvParams {
  Segment seg[3];
  int k = 0;
  int n_pairs = 0;
  int ksplit = 1;                  // warps per row pair
  const void* in = nullptr;        // the activation source (f32 or fp16 [K])
  const float* norm_w = nullptr;   // RmsNorm prologue
  float eps = 0.0f;
  float* out = nullptr;            // StoreArgmax / AddResidual / SwiGlu: [rows of segment 0] per token
  int out_stride = 0;              // floats between two tokens' outputs (NT > 1)
  // QkvRope epilogue
  const float* bias[3] = {nullptr, nullptr, nullptr};
  __half* q_out = nullptr;         // [n_head * D]
  __half* k_cache = nullptr;       // this layer's [G][max_seq][D]
  __half* v_cache = nullptr;
  int max_seq = 0, head_dim = 0, n_rot = 0, neox = 0;
  const float* inv_freq = nullptr;
  const int* state = nullptr;      // {token, position, ...}
  // The LM head's streamed rounds (StoreArgmax epilogue, ksplit 1; see head_rounds): 1 where gpu_engine.cu's
  // head_streams allows them, 0 for the register loop of every other GEMV.
  int head_streams = 0;
  // The graph step's LM head with the argmax folded in (StoreArgmax in gpu_engine.cu's GEMV kernel; null
  // elsewhere): argmax = {the best key so far (argmax_key), blocks arrived}, zero between steps; the last block
  // to arrive writes the token into step_state {token, position, -, token} (position += 1) and, with token_ring,
  // into the host's pinned slot of this position (token_ring[(position % ring_slots) * ring_stride]).
  unsigned long long* argmax = nullptr;
  int* step_state = nullptr;
  int* token_ring = nullptr;
  int ring_slots = 0, ring_stride = 0;
  // Graph-step diagnostics (GpuEngine::enable_stage_trace; null otherwise): 4 global-timer slots per launch,
  // written by gpu_engine.cu's GEMV kernel.
  unsigned long long* trace = nullptr;
};

struct Act {
  const int* q = nullptr;    // K int8 values as K/4 words
  const float* d = nullptr;  // [K/32]
  const float* s = nullptr;  // [K/32]
  const float* f = nullptr;  // f32 activations [K] (kTypeF16 weights; q, d, s unused)
};

__device__ __forceinline__ int load_u16x2(const std::uint8_t* p) {  // p is 2-byte aligned (Q4_0, Q8_0 blocks)
  const unsigned short* h = reinterpret_cast<const unsigned short*>(p);
  return static_cast<int>(static_cast<unsigned>(h[0]) | (static_cast<unsigned>(h[1]) << 16));
}

// The GPU's global timer in ns (stage traces).
__device__ __forceinline__ unsigned long long globaltimer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// The raw data of one item (a quarter of a block) and its block's scales, loaded together and kept as raw bits:
// nothing here may use a loaded value, or the warp would stall on each load before issuing the next one.
struct Item {
  int w0 = 0, w1 = 0;  // Q4: one word of nibbles (w1 unused); Q8_0: two words of int8; F16: halves 0-3
  int w2 = 0, w3 = 0;  // F16: halves 4-7 (unused otherwise)
  unsigned scales = 0; // Q4_1: half2 (d, m); Q4_0, Q8_0: half d in the low 16 bits
};

template <int TYPE>
__device__ __forceinline__ Item load_item(const std::uint8_t* row, int blk, int part) {
  Item it;
  if constexpr (TYPE == kTypeQ4_1) {
    const std::uint8_t* b = row + blk * 20;  // 4-byte aligned: 20-byte blocks, rows a multiple of 4 bytes
    it.w0 = *reinterpret_cast<const int*>(b + 4 + 4 * part);
    it.scales = *reinterpret_cast<const unsigned*>(b);
  } else if constexpr (TYPE == kTypeQ4_0) {
    const std::uint8_t* b = row + blk * 18;
    it.w0 = load_u16x2(b + 2 + 4 * part);
    it.scales = *reinterpret_cast<const unsigned short*>(b);
  } else if constexpr (TYPE == kTypeF16) {  // one 16-byte load: rows are 64-byte multiples on 256-byte bases
    const uint4 v = *reinterpret_cast<const uint4*>(row + (blk * 4 + part) * 16);
    it.w0 = static_cast<int>(v.x);
    it.w1 = static_cast<int>(v.y);
    it.w2 = static_cast<int>(v.z);
    it.w3 = static_cast<int>(v.w);
  } else {  // Q8_0
    const std::uint8_t* b = row + blk * 34;
    it.w0 = load_u16x2(b + 2 + 8 * part);
    it.w1 = load_u16x2(b + 6 + 8 * part);
    it.scales = *reinterpret_cast<const unsigned short*>(b);
  }
  return it;
}

// A 4-bit code as a float without a conversion instruction: 2^23 + q has q in its low mantissa bits.
__device__ __forceinline__ float nibble_to_float(unsigned q4) {
  return __int_as_float(static_cast<int>(0x4B000000u | (q4 & 0xFu))) - 8388608.0f;
}

// Signed byte `byte` (0..3) of `word` as a float without a conversion instruction (I2F runs at a quarter of the
// FMA rate or less; the Q8_0 LM head of SmolLM2 converts 28 M of them per token): flipping the sign bit gives
// q + 128 in 0..255, placed in the low mantissa bits of 2^23 by one byte permute; exact.
__device__ __forceinline__ float int8_to_float(int word, int byte) {
  const unsigned biased = static_cast<unsigned>(word) ^ 0x80808080u;
  return __int_as_float(static_cast<int>(__byte_perm(biased, 0x4B000000u, 0x7540u | byte))) - 8388736.0f;
}

// fp16 item (8 weights) times the 8 f32 activations a[0..7] (16-byte aligned shared memory), fp32 FMAs.
__device__ __forceinline__ float f16_item_dot(const Item& it, const float* a, float acc) {
  const float4 a0 = *reinterpret_cast<const float4*>(a);
  const float4 a1 = *reinterpret_cast<const float4*>(a + 4);
  const int words[4] = {it.w0, it.w1, it.w2, it.w3};
  const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 w = __half22float2(*reinterpret_cast<const __half2*>(&words[j]));
    acc = fmaf(w.x, av[2 * j], acc);
    acc = fmaf(w.y, av[2 * j + 1], acc);
  }
  return acc;
}

__device__ __forceinline__ float half_bits_to_float(unsigned bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
}

// Quantized item `part` (0..3) of block `blk` times f32 activations blk_a = a + 32 blk (FLOAT_ACT): the block's
// scales applied to this item's sums, d * sum(q a) (+ m * sum a); every lane adds its own item (no block sums).
// Element order within a block as in ggml: Q4 byte j holds elements j (low nibble) and j + 16 (high nibble).
template <int TYPE>
__device__ __forceinline__ float item_dot_f32(const Item& it, const float* blk_a, int part) {
  float qa = 0.0f, sa = 0.0f;
  if constexpr (TYPE == kTypeQ8_0) {
    const float4 a0 = *reinterpret_cast<const float4*>(blk_a + 8 * part);
    const float4 a1 = *reinterpret_cast<const float4*>(blk_a + 8 * part + 4);
    const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) qa = fmaf(int8_to_float(j < 4 ? it.w0 : it.w1, j & 3), av[j], qa);
  } else {
    const float4 lo = *reinterpret_cast<const float4*>(blk_a + 4 * part);
    const float4 hi = *reinterpret_cast<const float4*>(blk_a + 16 + 4 * part);
    const float av[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    const unsigned w = static_cast<unsigned>(it.w0);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float q = nibble_to_float(w >> (8 * (j & 3) + (j < 4 ? 0 : 4)));
      if constexpr (TYPE == kTypeQ4_0) q -= 8.0f;
      qa = fmaf(q, av[j], qa);
      if constexpr (TYPE == kTypeQ4_1) sa += av[j];
    }
  }
  const float d = half_bits_to_float(it.scales);
  if constexpr (TYPE == kTypeQ4_1) return fmaf(d, qa, half_bits_to_float(it.scales >> 16) * sa);
  return d * qa;
}

// Integer dot product of item `part` (0..3) of block `blk` with the activation.
template <int TYPE>
__device__ __forceinline__ int item_dot(const Item& it, int blk, int part, const Act& a) {
  const int* aq = a.q + blk * 8;
  if constexpr (TYPE == kTypeQ4_1) {
    const int s = __dp4a(it.w0 & 0x0F0F0F0F, aq[part], 0);              // elements 4p .. 4p+3
    return __dp4a((it.w0 >> 4) & 0x0F0F0F0F, aq[4 + part], s);         // elements 16+4p .. 16+4p+3
  } else if constexpr (TYPE == kTypeQ4_0) {
    const int lo = __vsub4(it.w0 & 0x0F0F0F0F, 0x08080808);            // nibble - 8, per byte
    const int hi = __vsub4((it.w0 >> 4) & 0x0F0F0F0F, 0x08080808);
    return __dp4a(hi, aq[4 + part], __dp4a(lo, aq[part], 0));
  } else {
    return __dp4a(it.w1, aq[2 * part + 1], __dp4a(it.w0, aq[2 * part], 0));
  }
}

// One block's contribution from its exact integer dot product (ggml's order: (d_w * d_x) * sumi + m_w * s_x).
template <int TYPE>
// with_min = false leaves out Q4_1's minimum term (a lane that is not its block's first, in the prefill GEMVs).
__device__ __forceinline__ float block_value(const Item& it, int blk, int sumi, const Act& a, bool with_min = true) {
  const float v = half_bits_to_float(it.scales) * a.d[blk] * static_cast<float>(sumi);
  if constexpr (TYPE == kTypeQ4_1) return with_min ? v + half_bits_to_float(it.scales >> 16) * a.s[blk] : v;
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Type dispatch for one row: f(std::integral_constant<int, T>) with T = TYPE when the kernel has one, else the
// row's runtime type (warp-uniform; the quantized types only: fp16 weights never share a GEMV with them).
template <int TYPE, class F>
__device__ __forceinline__ auto with_row_type(int type, F f) {
  if constexpr (TYPE != 0) return f(std::integral_constant<int, TYPE>{});
  switch (type) {
    case kTypeQ4_0: return f(std::integral_constant<int, kTypeQ4_0>{});
    case kTypeQ4_1: return f(std::integral_constant<int, kTypeQ4_1>{});
    default: return f(std::integral_constant<int, kTypeQ8_0>{});
  }
}
template <int TYPE>
__device__ __forceinline__ Item load_item_any(int type, const std::uint8_t* row, int blk, int part) {
  return with_row_type<TYPE>(type, [&](auto t) { return load_item<decltype(t)::value>(row, blk, part); });
}
template <int TYPE>
__device__ __forceinline__ int item_dot_any(int type, const Item& it, int blk, int part, const Act& a) {
  return with_row_type<TYPE>(type, [&](auto t) { return item_dot<decltype(t)::value>(it, blk, part, a); });
}
template <int TYPE>
__device__ __forceinline__ float item_dot_f32_any(int type, const Item& it, const float* blk_a, int part) {
  return with_row_type<TYPE>(type, [&](auto t) { return item_dot_f32<decltype(t)::value>(it, blk_a, part); });
}
template <int TYPE>
__device__ __forceinline__ float block_value_any(int type, const Item& it, int blk, int sumi, const Act& a,
                                                 bool with_min = true) {
  if constexpr (TYPE != 0) return block_value<TYPE>(it, blk, sumi, a, with_min);
  return type == kTypeQ4_1 ? block_value<kTypeQ4_1>(it, blk, sumi, a, with_min)
                           : block_value<kTypeQ8_0>(it, blk, sumi, a, with_min);
}

// kBatch rounds of items per lane and row, loaded into registers before any is used so that their loads are in
// flight together; with <= 48 items per warp one batch covers the row's share.
constexpr int kBatch = 2;
// Prologue loads per thread and round (build_activation), all issued before any is used; the first
// kNormPrefetch RmsNorm weights of a thread come from gemv_prefetch (K <= 1024 with 8 warps: few registers held).
constexpr int kPrologueLoads = 16;
constexpr int kNormPrefetch = 4;

struct RowPair {
  const std::uint8_t* a = nullptr;
  const std::uint8_t* b = nullptr;  // null: no second row
  int type_a = 0, type_b = 0;
};

struct Batch {
  Item a[kBatch], b[kBatch];
};

// gl: this lane's index in its group, gs: the group's lanes (32 * ksplit).
template <int TYPE>
__device__ __forceinline__ void load_batch(const RowPair& rp, int base, int n_items, int gl, int gs, Batch& bt) {
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    const int it = base + gs * u + gl;
    if (it < n_items) {
      bt.a[u] = load_item_any<TYPE>(rp.type_a, rp.a, it >> 2, it & 3);
      if (rp.b) bt.b[u] = load_item_any<TYPE>(rp.type_b, rp.b, it >> 2, it & 3);
    }
  }
}

// Adds the batch's block contributions to acc_a / acc_b (per lane; the caller reduces). The 4 lanes of one
// block sum their integer parts with two shuffles first, so each block enters exactly once.
// NT: tokens (activations) multiplied with the same loaded weights (1 in decode; a prefill chunk otherwise).
// FLOAT_ACT: f32 activations (act[t].f) for quantized weights (kTypeF16 always takes them).
template <int TYPE, int NT, bool FLOAT_ACT = false>
__device__ __forceinline__ void consume_batch(const RowPair& rp, int base, int n_items, int gl, int gs,
                                              const Batch& bt, const Act (&act)[NT], float (&acc_a)[NT],
                                              float (&acc_b)[NT]) {
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    if (base + gs * u + gl - (gl & 31) >= n_items) break;  // warp-uniform: the warp's first lane has nothing
    const int it = base + gs * u + gl;
    const bool valid = it < n_items;  // whole groups of 4 lanes are valid or not (n_items % 4 == 0)
    const int blk = it >> 2, part = it & 3;
    if constexpr (TYPE == kTypeF16) {  // float activations: each lane adds its own 8 products, no block sums
      if (valid) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          acc_a[t] = f16_item_dot(bt.a[u], act[t].f + 8 * it, acc_a[t]);
          if (rp.b) acc_b[t] = f16_item_dot(bt.b[u], act[t].f + 8 * it, acc_b[t]);
        }
      }
    } else if constexpr (FLOAT_ACT) {  // quantized weights, f32 activations: each lane adds its own item
      if (valid) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          acc_a[t] += item_dot_f32_any<TYPE>(rp.type_a, bt.a[u], act[t].f + blk * kQK, part);
          if (rp.b) acc_b[t] += item_dot_f32_any<TYPE>(rp.type_b, bt.b[u], act[t].f + blk * kQK, part);
        }
      }
    } else if constexpr (NT > 1) {
      // Prefill: each lane scales its own quarter of the block (no shuffles, a quarter of the instructions per
      // token); the block then enters as four float products instead of one exact integer sum: the prefill's
      // results differ from a decode step's by float rounding only.
      if (valid) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          acc_a[t] += block_value_any<TYPE>(rp.type_a, bt.a[u], blk,
                                            item_dot_any<TYPE>(rp.type_a, bt.a[u], blk, part, act[t]), act[t],
                                            part == 0);
          if (rp.b) {
            acc_b[t] += block_value_any<TYPE>(rp.type_b, bt.b[u], blk,
                                              item_dot_any<TYPE>(rp.type_b, bt.b[u], blk, part, act[t]), act[t],
                                              part == 0);
          }
        }
      }
    } else {  // decode: the block's exact integer sum, as on the CPU
      int sa = valid ? item_dot_any<TYPE>(rp.type_a, bt.a[u], blk, part, act[0]) : 0;
      int sb = valid && rp.b ? item_dot_any<TYPE>(rp.type_b, bt.b[u], blk, part, act[0]) : 0;
      sa += __shfl_xor_sync(0xffffffffu, sa, 1);
      sa += __shfl_xor_sync(0xffffffffu, sa, 2);
      sb += __shfl_xor_sync(0xffffffffu, sb, 1);
      sb += __shfl_xor_sync(0xffffffffu, sb, 2);
      if (valid && part == 0) {
        acc_a[0] += block_value_any<TYPE>(rp.type_a, bt.a[u], blk, sa, act[0]);
        if (rp.b) acc_b[0] += block_value_any<TYPE>(rp.type_b, bt.b[u], blk, sb, act[0]);
      }
    }
  }
}

// Q8_1 quantization of 8 consecutive values v of element group `oct` (every lane of the warp calls it; the 4
// threads of one 32-element block, consecutive lanes, combine their amax and sums by shuffles), the CPU engine's
// rule: d = amax / 127 (kept as f16), q = rint(v * 127 / amax), s = f16(d * sum q). Writes the 8 int8 as 2 words
// at q32[2 oct], and from the block's first thread d and s at [oct / 4]; nothing when !valid.
__device__ __forceinline__ void quantize_octet(const float (&v)[8], bool valid, int oct, unsigned* q32, float* sd,
                                               float* ss) {
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(v[j]));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int qsum = 0;
  unsigned packed[2] = {0u, 0u};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int q = __float2int_rn(__fmul_rn(v[j], id));
    qsum += q;
    packed[j / 4] |= (static_cast<unsigned>(q) & 0xFFu) << (8 * (j % 4));
  }
  qsum += __shfl_xor_sync(0xffffffffu, qsum, 1);
  qsum += __shfl_xor_sync(0xffffffffu, qsum, 2);
  if (valid) {
    q32[oct * 2] = packed[0];
    q32[oct * 2 + 1] = packed[1];
    if ((oct & 3) == 0) {
      sd[oct / 4] = __half2float(__float2half_rn(d));
      ss[oct / 4] = __half2float(__float2half_rn(d * static_cast<float>(qsum)));
    }
  }
}

// Builds the Q8_1 activation of one token in shared memory from the prologue's source (all threads take part).
// Pass 1 stages the values (x * g for RmsNorm) in shared memory, with every global load of a thread in flight
// at once; pass 2 quantizes, one thread per 8 elements (4 threads per 32-element block, combined by shuffles).
// FLOAT_ACT (f32 activations): there is no pass 2; the staged values are the activation, without the RmsNorm scale
// s, which is returned for the caller to multiply its dot products with (sum w (x g) s = s sum w (x g)). Scaling
// the staged values instead took a pass over them and a second block barrier: the engine's decode was 2% slower
// (bench/results/experiments_twenty_first_session/, call 1). Returns 1 where the scale is already applied.
// g_first: the first norm weights of the first round, as gemv_prefetch() loaded them (RmsNorm).
template <Prologue P, int WARPS, bool COHERENT, bool FLOAT_ACT = false>
__device__ float build_activation(const GemvParams& p, const float (&g_first)[kNormPrefetch], float* sv,
                                  std::int8_t* sq, float* sd, float* ss, float* red) {
  constexpr int kThreads = WARPS * 32;
  const int k = p.k;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float sum = 0.0f;
  // Rounds of kPerThread loads per thread, all issued before any is used.
  constexpr int kPerThread = kPrologueLoads;
  for (int base = 0; base < k; base += kPerThread * kThreads) {
    float x[kPerThread], g[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = base + j * kThreads + tid;
      x[j] = 0.0f;
      g[j] = 1.0f;
      if (i < k) {
        if constexpr (P == Prologue::F16) {
          x[j] = __half2float(load_act<COHERENT>(static_cast<const __half*>(p.in) + i));
        } else {
          x[j] = load_act<COHERENT>(static_cast<const float*>(p.in) + i);
        }
        if constexpr (P == Prologue::RmsNorm) g[j] = base == 0 && j < kNormPrefetch ? g_first[j] : p.norm_w[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = base + j * kThreads + tid;
      if (i < k) {
        if constexpr (P == Prologue::RmsNorm) sum += x[j] * x[j];
        sv[i] = P == Prologue::RmsNorm ? x[j] * g[j] : x[j];
      }
    }
  }
  float scale = 1.0f;
  if constexpr (P == Prologue::RmsNorm) {
    sum = warp_sum(sum);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) total += red[w];
    scale = 1.0f / sqrtf(total / static_cast<float>(k) + p.eps);  // ggml: mean, + eps, 1/sqrt
  } else {
    __syncthreads();
  }
  if constexpr (FLOAT_ACT) {
    if constexpr (P == Prologue::RmsNorm) {
      return scale;
    }
    return 1.0f;
  }
  const int n_oct = k / 8;
  for (int base = 0; base < n_oct; base += kThreads) {  // uniform trip count: every lane reaches the shuffles
    const int oct = base + tid;
    const bool valid = oct < n_oct;  // whole groups of 4 threads are valid or not (n_oct % 4 == 0)
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = valid ? sv[oct * 8 + j] * scale : 0.0f;
    quantize_octet(v, valid, oct, reinterpret_cast<unsigned*>(sq), sd, ss);
  }
  __syncthreads();
  return 1.0f;
}

// The Q8_1 activations of NT > 1 tokens (a prefill step) at once, same rule as build_activation: pass 1 (RmsNorm
// only) sums every token's squares with all its loads in flight, one reduction for all tokens (red: WARPS * NT
// floats); pass 2 quantizes (token, 8 elements) items, re-reading the inputs (L1/L2) instead of staging them.
// FLOAT_ACT (fp16 weights): pass 2 writes the f32 activations to sv [NT][K] instead.
template <Prologue P, int WARPS, bool COHERENT, int NT, bool FLOAT_ACT = false>
__device__ void build_activations(const GemvParams& p, std::int8_t* sq, float* sd, float* ss, float* red,
                                  float* sv = nullptr) {
  constexpr int kThreads = WARPS * 32;
  const int k = p.k;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  auto input = [&](int t, int i) -> float {
    const std::size_t at = static_cast<std::size_t>(t) * k + i;
    if constexpr (P == Prologue::F16) {
      return __half2float(load_act<COHERENT>(static_cast<const __half*>(p.in) + at));
    } else {
      return load_act<COHERENT>(static_cast<const float*>(p.in) + at);
    }
  };
  float scale[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) scale[t] = 1.0f;
  if constexpr (P == Prologue::RmsNorm) {
    float sum[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) sum[t] = 0.0f;
    for (int i = tid; i < k; i += kThreads) {
      float x[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) x[t] = input(t, i);
#pragma unroll
      for (int t = 0; t < NT; ++t) sum[t] += x[t] * x[t];
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      sum[t] = warp_sum(sum[t]);
      if (lane == 0) red[warp * NT + t] = sum[t];
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float total = 0.0f;
      for (int w = 0; w < WARPS; ++w) total += red[w * NT + t];
      scale[t] = 1.0f / sqrtf(total / static_cast<float>(k) + p.eps);  // ggml: mean, + eps, 1/sqrt
    }
  }
  if constexpr (FLOAT_ACT) {
    for (int item = tid; item < NT * k; item += kThreads) {
      const int t = item / k, i = item % k;
      float st = 1.0f;
#pragma unroll
      for (int u = 0; u < NT; ++u) st = u == t ? scale[u] : st;  // register-indexed without local memory
      float x = input(t, i);
      if constexpr (P == Prologue::RmsNorm) x *= p.norm_w[i];
      sv[item] = x * st;
    }
    __syncthreads();
    return;
  }
  const int n_oct = k / 8;
  for (int base = 0; base < NT * n_oct; base += kThreads) {  // uniform trip count: every lane reaches the shuffles
    const int item = base + tid;
    const bool valid = item < NT * n_oct;  // whole groups of 4 threads are valid or not (n_oct % 4 == 0)
    const int t = valid ? item / n_oct : 0, oct = valid ? item % n_oct : 0;
    float st = 1.0f;
#pragma unroll
    for (int u = 0; u < NT; ++u) st = u == t ? scale[u] : st;  // register-indexed without local memory
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float x = 0.0f;
      if (valid) {
        x = input(t, oct * 8 + j);
        if constexpr (P == Prologue::RmsNorm) x *= p.norm_w[oct * 8 + j];
      }
      v[j] = x * st;
    }
    quantize_octet(v, valid, oct, reinterpret_cast<unsigned*>(sq + static_cast<std::size_t>(t) * k),
                   sd + t * (k / kQK), ss + t * (k / kQK));
  }
  __syncthreads();
}

// Rows (within their segments) of pair `pair`, and for QkvRope which RoPE frequency applies (-1: none).
struct PairRows {
  int seg_a, row_a, seg_b, row_b;  // row_b < 0: no second row
  int rope_i;
};

template <Epilogue E>
__device__ PairRows pair_rows(const GemvParams& p, int pair) {
  if constexpr (E == Epilogue::SwiGlu) {
    return {0, pair, 1, pair, -1};
  } else if constexpr (E == Epilogue::QkvRope) {
    const int half_d = p.head_dim / 2;
    const int q_pairs = p.seg[0].rows / 2, k_pairs = p.seg[1].rows / 2;
    int seg = 0, local = pair;
    if (local >= q_pairs) { seg = 1; local -= q_pairs; }
    if (seg == 1 && local >= k_pairs) { seg = 2; local -= k_pairs; }
    if (seg == 2) return {2, 2 * local, 2, 2 * local + 1, -1};
    const int head = local / half_d, i = local % half_d;
    const int half_rot = p.n_rot / 2;
    int d0 = 2 * i, d1 = 2 * i + 1;  // normal RoPE: interleaved pairs
    if (p.neox) {                    // NeoX: (i, i + n_rot/2), unrotated dims paired as neighbours
      if (i < half_rot) { d0 = i; d1 = i + half_rot; } else { d0 = p.n_rot + 2 * (i - half_rot); d1 = d0 + 1; }
    }
    return {seg, head * p.head_dim + d0, seg, head * p.head_dim + d1, i < half_rot ? i : -1};
  } else {
    const int r = 2 * pair;
    return {0, r, 0, r + 1 < p.seg[0].rows ? r + 1 : -1, -1};
  }
}


// Dynamic shared memory of a GEMV with input length k for nt tokens in a block of `warps` warps: staged values sv
// (f32 [k]; nt = 1 only: build_activations re-reads its inputs instead), block scales sd, ss (f32 [nt][k/32]
// each), the block reduction red (f32 [warps]), the K-split partial sums group_sum (float2 [warps][nt]; for nt > 1
// also build_activations' reduction), and the quantized activations sq (int8 [nt][k]). With float_act (fp16
// weights) sv holds the f32 activations of all nt tokens (f32 [nt][k]) and there is no sd, ss or sq.
struct GemvSmem {
  float* sv;
  float* sd;
  float* ss;
  float* red;
  float2* group_sum;
  std::int8_t* sq;
  unsigned char* head_ring = nullptr;  // the LM head's streamed rounds (head_ring_offset; set by the kernel)
};

__host__ __device__ inline std::size_t gemv_smem_bytes(int k, int warps, int nt = 1, bool float_act = false) {
  const std::size_t reductions = static_cast<std::size_t>(warps) * (sizeof(float) + nt * sizeof(float2));
  if (float_act) return static_cast<std::size_t>(nt) * k * sizeof(float) + reductions;
  return (nt == 1 ? static_cast<std::size_t>(k) * sizeof(float) : 0) + static_cast<std::size_t>(nt) * k +
         2 * sizeof(float) * nt * (k / kQK) + reductions;
}

// Where the LM head's rings start (16-byte aligned after the GEMV's own shared memory; one token).
__host__ __device__ inline std::size_t head_ring_offset(int k, int warps, bool float_act) {
  return (gemv_smem_bytes(k, warps, 1, float_act) + 15) / 16 * 16;
}

// base: 16-byte aligned.
__device__ inline GemvSmem gemv_smem(unsigned char* base, int k, int warps, int nt = 1, bool float_act = false) {
  GemvSmem s;
  if (float_act) {
    s.sv = reinterpret_cast<float*>(base);
    s.sd = s.ss = nullptr;
    s.sq = nullptr;
    s.red = s.sv + static_cast<std::size_t>(nt) * k;
    s.group_sum = reinterpret_cast<float2*>(s.red + warps);  // 8-byte aligned: k % 32 == 0 and warps even
    return s;
  }
  s.sv = nt == 1 ? reinterpret_cast<float*>(base) : nullptr;
  s.sd = reinterpret_cast<float*>(base) + (nt == 1 ? k : 0);
  s.ss = s.sd + nt * (k / kQK);
  s.red = s.ss + nt * (k / kQK);
  s.group_sum = reinterpret_cast<float2*>(s.red + warps);  // 8-byte aligned: k % 32 == 0 and warps even
  s.sq = reinterpret_cast<std::int8_t*>(s.group_sum + warps * nt);
  return s;
}

// Barrier among the gs threads of K-split group `group` only (named barrier 1 + group; 0 is __syncthreads): the
// other groups of the block are not held up by this one's reduction. With ksplit >= 2 a block of at most 16 warps
// has at most 8 groups, so the ids stay within the 16 barriers. Against __syncthreads (bench/results/
// experiments_twentieth_session/, call 13, random model with SmolLM2-135M's shapes, vocabulary and types, H200):
// decode +0.8% at depth 0, +0.6% at 1000; the LM head's GEMV, which loops over 15 rounds of pairs, 45.0 -> 41.9 us.
__device__ __forceinline__ void group_sync(int group, int gs) {
  asm volatile("bar.sync %0, %1;" ::"r"(1 + group), "r"(gs) : "memory");
}

// Warps per row pair: the fewest (a power of two, at most `warps`) that leave each warp <= kItemsPerWarp items.
__host__ __device__ inline int gemv_ksplit(int k, int warps) {
  const int n_items = k / kQK * 4;
  int s = 1;
  while (s < warps && n_items > kItemsPerWarp * s) s *= 2;
  return s;
}

// A thread's running argmax for the StoreArgmax epilogue: the first index of the largest value; NaN never wins.
struct ArgmaxAcc {
  float value = -INFINITY;
  int index = -1;  // -1: nothing seen
};

__device__ __forceinline__ void argmax_update(ArgmaxAcc& a, float v, int i) {
  if (v == v && (a.index < 0 || v > a.value || (v == a.value && i < a.index))) {
    a.value = v;
    a.index = i;
  }
}

// A running argmax as one 64-bit key whose maximum is the argmax: (the value's bits made orderable << 32) | ~index,
// so the larger value wins and, between equal values, the smaller index; -0 and +0 tie; 0: nothing seen.
__device__ __forceinline__ unsigned long long argmax_key(const ArgmaxAcc& a) {
  if (a.index < 0) return 0ull;  // nothing (or only NaN) seen
  const unsigned bits = a.value == 0.0f ? 0u : __float_as_uint(a.value);
  const unsigned ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFu - static_cast<unsigned>(a.index));
}

// The index a key holds (0 for the empty key: no finite or infinite value seen, e.g. all NaN).
__device__ __forceinline__ int argmax_key_index(unsigned long long key) {
  return key == 0ull ? 0 : static_cast<int>(0xFFFFFFFFu - static_cast<unsigned>(key & 0xFFFFFFFFull));
}

// The largest key of the block's WARPS * 32 threads, in thread 0 (the others return theirs partly reduced).
// Every thread of the block calls it (a block barrier).
template <int WARPS>
__device__ unsigned long long block_argmax_key(const ArgmaxAcc& best) {
  __shared__ unsigned long long s_key[WARPS];
  unsigned long long key = argmax_key(best);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, key, o);
    key = other > key ? other : key;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) s_key[warp] = key;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < WARPS; ++w) key = s_key[w] > key ? s_key[w] : key;
  }
  return key;
}

__device__ __forceinline__ RowPair pair_row_pointers(const GemvParams& p, const PairRows& r) {
  const Segment& sa = p.seg[r.seg_a];
  const Segment& sb = p.seg[r.seg_b];
  RowPair rp;
  rp.a = sa.w + static_cast<std::size_t>(r.row_a) * sa.row_bytes;
  rp.b = r.row_b >= 0 ? sb.w + static_cast<std::size_t>(r.row_b) * sb.row_bytes : nullptr;
  rp.type_a = sa.type;
  rp.type_b = sb.type;
  return rp;
}

// ------------------------------------------------------------------------------ the LM head's streamed rounds
// The LM head (StoreArgmax epilogue, one warp per row pair, p.head_streams) loops over many rounds of row pairs
// (SmolLM2-135M: 24576 pairs of 612-byte Q8_0 rows, ~8 rounds per warp, 30 MB read from DRAM per token). The
// register loop of the other GEMVs keeps only the next round's first batch in flight, so every round waited on
// DRAM at least once. Here each warp streams its pairs' bytes into its own ring of kHeadStages stages of shared
// memory with cp.async, kHeadStages - 1 pairs ahead of the pair it multiplies, and its lanes read their items from
// the stage (load_batch / consume_batch on shared-memory rows: the same items in the same order as the register
// loop, so the logits are bit for bit the same). Measured (bench/results/experiments_twenty_first_session/, call
// 2, H200): SmolLM2-135M's head 27.1 -> 19.7 us; still ~2.7x the time of reading its 30 MB at copy bandwidth (why
// is not established: the compute per byte, ~5 us of issue per SM, does not explain it either).
// A pair's two rows are adjacent in memory (StoreArgmax: rows 2 pair and 2 pair + 1). Limits (gpu_engine.cu's
// head_streams, which sets p.head_streams only where they hold): one segment, row_bytes % 4 == 0 and the matrix
// 16-byte aligned, so that a pair starts 4-byte aligned and 16-byte copies from the 16-byte boundary at or below
// its first byte cover it (the bytes before it belong to the previous row: valid memory); the last copy of a pair
// reads only up to its last byte (cp.async zero fill).
constexpr int kHeadStages = 4;
__host__ __device__ inline int head_stage_bytes(int row_bytes) { return (2 * row_bytes + 16 + 15) / 16 * 16; }
__host__ __device__ inline std::size_t head_ring_bytes(int row_bytes, int warps) {
  return static_cast<std::size_t>(warps) * kHeadStages * head_stage_bytes(row_bytes);
}

// Issues the copies of pair `pair` into `stage` (16-byte aligned shared memory) and commits them as one group (an
// empty group for a pair beyond the last, so that every round commits exactly one: the waits count groups).
// The rows land at stage + (their first byte's address % 16) (head_pair_rows).
__device__ __forceinline__ void head_issue(const GemvParams& p, int pair, unsigned char* stage, int lane) {
  if (pair < p.n_pairs) {
    const Segment& sg = p.seg[0];
    const int rows = 2 * pair + 1 < sg.rows ? 2 : 1;
    const std::uint8_t* first = sg.w + static_cast<std::size_t>(2 * pair) * sg.row_bytes;
    const std::uint8_t* end = first + rows * sg.row_bytes;
    const std::uint8_t* base =
        reinterpret_cast<const std::uint8_t*>(reinterpret_cast<std::uintptr_t>(first) & ~std::uintptr_t{15});
    const int n_chunks = static_cast<int>((end - base + 15) / 16);
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(stage));
    for (int i = lane; i < n_chunks; i += 32) {
      const int bytes = static_cast<int>(min(static_cast<std::ptrdiff_t>(16), end - (base + 16 * i)));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst + 16 * i), "l"(base + 16 * i),
                   "r"(bytes)
                   : "memory");
    }
  }
  asm volatile("cp.async.commit_group;" ::: "memory");
}

// Waits until at most PENDING of this thread's most recent cp.async groups are in flight.
template <int PENDING>
__device__ __forceinline__ void head_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(PENDING) : "memory");
}

// This warp's ring (of the block's WARPS rings after the GEMV's own shared memory).
__device__ __forceinline__ unsigned char* head_warp_ring(const GemvParams& p, unsigned char* ring) {
  return ring + (threadIdx.x >> 5) * kHeadStages * head_stage_bytes(p.seg[0].row_bytes);
}

// Issues the first kHeadStages - 1 pairs of this warp (block `block` of the grid, one warp per pair); the engine's
// kernel calls it before its programmatic wait (weights are never written).
template <int WARPS>
__device__ __forceinline__ void head_prefetch(const GemvParams& p, int block, int n_blocks, unsigned char* ring) {
  unsigned char* mine = head_warp_ring(p, ring);
  const int stage_bytes = head_stage_bytes(p.seg[0].row_bytes);
  const int first = block * WARPS + (threadIdx.x >> 5), stride = n_blocks * WARPS;
  for (int s = 0; s + 1 < kHeadStages; ++s) {
    head_issue(p, first + s * stride, mine + s * stage_bytes, static_cast<int>(threadIdx.x & 31));
  }
}

// The rows of pair `pair` in its stage.
__device__ __forceinline__ RowPair head_pair_rows(const GemvParams& p, int pair, const unsigned char* stage) {
  const Segment& sg = p.seg[0];
  const std::size_t first = static_cast<std::size_t>(2 * pair) * sg.row_bytes;
  const std::uint8_t* a = stage + ((reinterpret_cast<std::uintptr_t>(sg.w) + first) & 15);
  RowPair rp;
  rp.a = a;
  rp.b = 2 * pair + 1 < sg.rows ? a + sg.row_bytes : nullptr;
  rp.type_a = rp.type_b = sg.type;
  return rp;
}

// Every round of this warp's row pairs (after head_prefetch with the same block and grid; act: the built
// activation): round j issues pair j + kHeadStages - 1 into the stage round j - 1 used, waits for pair j's group,
// multiplies, and lane 0 stores the pair's two outputs and updates its running argmax (best).
template <int TYPE, int WARPS, bool FLOAT_ACT>
__device__ void head_rounds(const GemvParams& p, int block, int n_blocks, const Act& act, unsigned char* ring,
                            float scale, ArgmaxAcc* best) {
  const int lane = threadIdx.x & 31;
  unsigned char* mine = head_warp_ring(p, ring);
  const int stage_bytes = head_stage_bytes(p.seg[0].row_bytes);
  const int n_items = p.k / kQK * 4, stride = n_blocks * WARPS;
  const Act acts[1] = {act};
  int use = 0, fill = kHeadStages - 1;  // the stage this round multiplies, the stage it fills
  for (int pair = block * WARPS + (threadIdx.x >> 5); pair < p.n_pairs; pair += stride) {
    head_issue(p, pair + (kHeadStages - 1) * stride, mine + fill * stage_bytes, lane);
    head_wait<kHeadStages - 1>();  // this pair's group is complete (for this lane's copies) ...
    __syncwarp();                  // ... and for every lane's
    const RowPair rp = head_pair_rows(p, pair, mine + use * stage_bytes);
    float acc_a[1] = {0.0f}, acc_b[1] = {0.0f};
    for (int base = 0; base < n_items; base += 32 * kBatch) {
      Batch bt;
      load_batch<TYPE>(rp, base, n_items, lane, 32, bt);
      consume_batch<TYPE, 1, FLOAT_ACT>(rp, base, n_items, lane, 32, bt, acts, acc_a, acc_b);
    }
    const float a = warp_sum(acc_a[0]) * scale, b = warp_sum(acc_b[0]) * scale;
    if (lane == 0) {
      p.out[2 * pair] = a;
      if (rp.b) p.out[2 * pair + 1] = b;
      argmax_update(*best, a, 2 * pair);
      if (rp.b) argmax_update(*best, b, 2 * pair + 1);
    }
    __syncwarp();  // every lane has read the stage before the next round refills it
    use = use + 1 == kHeadStages ? 0 : use + 1;
    fill = fill + 1 == kHeadStages ? 0 : fill + 1;
  }
  head_wait<0>();  // no copy outlives the kernel (the last rounds' groups are empty or already waited for)
}

// The row pair a group works on and its loaded batch, carried from gemv_prefetch() into gemv_compute(), with the
// other values that nothing writes during a step: this thread's first round of RmsNorm weights
// (build_activation's g), and for QkvRope the position and the first pair's RoPE frequency and biases (its
// epilogue's loads).
struct GemvCursor {
  PairRows r{};
  RowPair rp;
  Batch bt;
  float norm_w[kNormPrefetch];
  float rope_freq = 0.0f, bias_a = 0.0f, bias_b = 0.0f;
  int pos = 0;
};

// Loads the first batch of this block's first row pair (block `block` of the GEMV's grid; p.ksplit set) and the
// cursor's other values: everything the GEMV reads that no kernel or stage of the step writes (the weights, and
// the position: written before the step, by the host copy or the previous step's argmax), so that a caller can
// issue it before waiting for the previous kernel or stage (its latency, often a DRAM miss, then overlaps the
// wait).
template <Epilogue E, int TYPE, int WARPS>
__device__ __forceinline__ void gemv_prefetch(const GemvParams& p, int block, GemvCursor& c) {
  if constexpr (E == Epilogue::QkvRope) c.pos = p.state[1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kshift = __ffs(p.ksplit) - 1;  // ksplit is a power of two
  const int groups = WARPS >> kshift, group = warp >> kshift, sub = warp & (p.ksplit - 1);
  const int pair = block * groups + group;
  // The LM head's streamed rounds issue their own first pairs (head_prefetch).
  const bool head_streams = E == Epilogue::StoreArgmax && p.head_streams;
  if (pair < p.n_pairs && !head_streams) {
    c.r = pair_rows<E>(p, pair);
    c.rp = pair_row_pointers(p, c.r);
    load_batch<TYPE>(c.rp, 0, p.k / kQK * 4, sub * 32 + lane, 32 * p.ksplit, c.bt);
    if constexpr (E == Epilogue::QkvRope) {
      if (c.r.rope_i >= 0) c.rope_freq = p.inv_freq[c.r.rope_i];
      if (const float* bias = p.bias[c.r.seg_a]) {
        c.bias_a = bias[c.r.row_a];
        c.bias_b = bias[c.r.row_b];
      }
    }
  }
  if (p.norm_w) {  // RmsNorm: the indices build_activation's first round uses
#pragma unroll
    for (int j = 0; j < kNormPrefetch; ++j) {
      const int i = j * WARPS * 32 + static_cast<int>(threadIdx.x);
      c.norm_w[j] = i < p.k ? p.norm_w[i] : 1.0f;
    }
  }
}

// The GEMV of block `block` of `n_blocks` for NT tokens (their inputs: rows p.in + t * K; their outputs: see the
// epilogues): builds the activations, then each group takes row pairs block * groups + group,
// + n_blocks * groups, ... (c: from gemv_prefetch with the same block), each loaded weight multiplied with all NT
// activations. best: the thread's running argmax (StoreArgmax only, NT = 1).
// Per token t the epilogue writes: StoreArgmax/AddResidual/SwiGlu: p.out + t * p.out_stride; QkvRope:
// q_out + t * H * D
// and the cache at position state[1] + t.
// FLOAT_ACT: f32 activations for quantized weights (see the top of this section).
template <Prologue P, Epilogue E, int TYPE, int WARPS, bool COHERENT, int NT = 1, bool FLOAT_ACT = false>
__device__ __forceinline__ void gemv_compute(const GemvParams& p, int block, int n_blocks, GemvCursor& c,
                                             const GemvSmem& s, ArgmaxAcc* best) {
  static_assert(NT == 1 || E != Epilogue::StoreArgmax, "the argmax epilogue is for one token");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_items = p.k / kQK * 4;
  const int ksplit = p.ksplit;
  const int kshift = __ffs(ksplit) - 1;  // ksplit is a power of two: shifts, not divisions (~20 instructions each)
  const int groups = WARPS >> kshift;
  const int group = warp >> kshift, sub = warp & (ksplit - 1);
  const int gl = sub * 32 + lane, gs = 32 * ksplit;
  const int nb = p.k / kQK;
  constexpr bool kFloatAct = FLOAT_ACT || float_activations(TYPE);
  // AddResidual: the residual values the epilogue adds (read by the thread that writes them: sub 0, lane 0 of a
  // group), loaded for the first round after the prologue and for each next round after this one's epilogue. The
  // previous kernels wrote them (visible: the caller waited for them) and nothing in this launch writes them
  // before the epilogue, so their latency hides behind the dot products instead of being the last step of the
  // chain. (Loaded before the prologue, they made the decode kernels spill: the prologue needs the registers.)
  // One token only: with NT tokens the 2 NT values made the prefill kernels spill, and prefill is not latency-bound.
  constexpr bool kPrefetchResidual = E == Epilogue::AddResidual && NT == 1;
  const bool residual_thread = kPrefetchResidual && sub == 0 && lane == 0;
  float res_a[NT], res_b[NT];
  auto load_residual = [&](const PairRows& r) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* out = p.out + static_cast<std::size_t>(t) * p.out_stride;
      res_a[t] = load_act<COHERENT>(out + r.row_a);
      res_b[t] = r.row_b >= 0 ? load_act<COHERENT>(out + r.row_b) : 0.0f;
    }
  };
  Act act[NT];
  float norm_scale = 1.0f;  // build_activation's scale left for the dot products (1 unless folded)
  if constexpr (NT == 1) {
    norm_scale = build_activation<P, WARPS, COHERENT, kFloatAct>(p, c.norm_w, s.sv, s.sq, s.sd, s.ss, s.red);
  } else {  // group_sum's WARPS * NT float2 are free until the first reduction
    build_activations<P, WARPS, COHERENT, NT, kFloatAct>(p, s.sq, s.sd, s.ss, reinterpret_cast<float*>(s.group_sum),
                                                        s.sv);
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if constexpr (kFloatAct) {
      act[t].f = s.sv + static_cast<std::size_t>(t) * p.k;
    } else {
      act[t] = Act{reinterpret_cast<const int*>(s.sq + t * p.k), s.sd + t * nb, s.ss + t * nb};
    }
  }

  if constexpr (E == Epilogue::StoreArgmax && NT == 1) {
    if (p.head_streams) {
      head_rounds<TYPE, WARPS, kFloatAct>(p, block, n_blocks, act[0], s.head_ring, norm_scale, best);
      return;
    }
  }
  if (residual_thread && block * groups + group < p.n_pairs) load_residual(c.r);
  const int stride = n_blocks * groups;
  // The first pair's epilogue values from gemv_prefetch (the cursor moves on to the next round's pair below).
  const float first_freq = c.rope_freq, first_bias_a = c.bias_a, first_bias_b = c.bias_b;
  const int position = c.pos;  // QkvRope
  for (int pair_base = block * groups; pair_base < p.n_pairs; pair_base += stride) {  // block-uniform
    const int pair = pair_base + group;
    const bool active = pair < p.n_pairs;  // warp-uniform
    const bool first_round = pair_base == block * groups;
    const PairRows cur = c.r;
    const RowPair cur_rp = c.rp;
    float2 dot[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) dot[t] = make_float2(0.0f, 0.0f);
    if (active) {
      // The next round's first batch (the LM head loops over its rows) goes out before this one is consumed.
      Batch bt_next;
      if (pair + stride < p.n_pairs) {
        c.r = pair_rows<E>(p, pair + stride);
        c.rp = pair_row_pointers(p, c.r);
        load_batch<TYPE>(c.rp, 0, n_items, gl, gs, bt_next);
      }
      float acc_a[NT], acc_b[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) acc_a[t] = acc_b[t] = 0.0f;
      consume_batch<TYPE, NT, kFloatAct>(cur_rp, 0, n_items, gl, gs, c.bt, act, acc_a, acc_b);
      for (int base = gs * kBatch; base < n_items; base += gs * kBatch) {
        load_batch<TYPE>(cur_rp, base, n_items, gl, gs, c.bt);
        consume_batch<TYPE, NT, kFloatAct>(cur_rp, base, n_items, gl, gs, c.bt, act, acc_a, acc_b);
      }
#pragma unroll
      for (int t = 0; t < NT; ++t) dot[t] = make_float2(warp_sum(acc_a[t]), warp_sum(acc_b[t]));
      c.bt = bt_next;
    }
    if (ksplit > 1) {
      if (lane == 0) {
#pragma unroll
        for (int t = 0; t < NT; ++t) s.group_sum[warp * NT + t] = dot[t];
      }
      group_sync(group, gs);
      if (sub == 0) {
        for (int w = 1; w < ksplit; ++w) {
#pragma unroll
          for (int t = 0; t < NT; ++t) {
            dot[t].x += s.group_sum[(warp + w) * NT + t].x;
            dot[t].y += s.group_sum[(warp + w) * NT + t].y;
          }
        }
      }
      group_sync(group, gs);  // group_sum is reused by the next round
    }
    if (!active || sub != 0 || lane != 0) continue;
    const bool has_b = cur_rp.b != nullptr;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float2 d = make_float2(dot[t].x * norm_scale, dot[t].y * norm_scale);
      float* out = p.out + static_cast<std::size_t>(t) * p.out_stride;
      if constexpr (E == Epilogue::StoreArgmax) {
        out[cur.row_a] = d.x;
        if (has_b) out[cur.row_b] = d.y;
        argmax_update(*best, d.x, cur.row_a);
        if (has_b) argmax_update(*best, d.y, cur.row_b);
      } else if constexpr (E == Epilogue::AddResidual) {
        out[cur.row_a] = (kPrefetchResidual ? res_a[t] : load_act<COHERENT>(out + cur.row_a)) + d.x;
        if (has_b) out[cur.row_b] = (kPrefetchResidual ? res_b[t] : load_act<COHERENT>(out + cur.row_b)) + d.y;
      } else if constexpr (E == Epilogue::SwiGlu) {
        const float g = d.x;
        out[cur.row_a] = g / (1.0f + expf(-g)) * d.y;  // silu(gate) * up
      } else {  // QkvRope: bias, rotation, fp16 stores (q buffer, or the cache at the current position)
        float a = d.x, b = d.y;
        if (const float* bias = p.bias[cur.seg_a]) {
          a += first_round ? first_bias_a : bias[cur.row_a];
          b += first_round ? first_bias_b : bias[cur.row_b];
        }
        const int pos = position + t;
        if (cur.rope_i >= 0) {
          float sn, cs;
          sincosf(static_cast<float>(pos) * (first_round ? first_freq : p.inv_freq[cur.rope_i]), &sn, &cs);
          const float a2 = a * cs - b * sn;
          b = a * sn + b * cs;
          a = a2;
        }
        if (cur.seg_a == 0) {
          __half* q = p.q_out + static_cast<std::size_t>(t) * p.seg[0].rows;
          q[cur.row_a] = __float2half_rn(a);
          q[cur.row_b] = __float2half_rn(b);
        } else {
          const int head = cur.row_a / p.head_dim;  // both rows of a pair are in one head
          __half* cache = (cur.seg_a == 1 ? p.k_cache : p.v_cache) +
                          (static_cast<std::size_t>(head) * p.max_seq + pos) * p.head_dim;
          cache[cur.row_a % p.head_dim] = __float2half_rn(a);
          cache[cur.row_b % p.head_dim] = __float2half_rn(b);
        }
      }
    }
    if (residual_thread && pair + stride < p.n_pairs) load_residual(c.r);  // c.r: the next round's pair
  }
}

}  // namespace edgellm::cuda::gemv_q8
