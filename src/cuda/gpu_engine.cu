// GPU decode engine (gpu_engine.h): the quantized GEMV kernel with its prologues/epilogues, embedding, argmax and
// the host side (weight upload, graph capture per length bucket, the step).
#include "gpu_engine.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda_check.h"

namespace edgellm::cuda {
namespace {

constexpr int kQK = 32;           // elements per ggml block (Q4_0, Q4_1, Q8_0) and per Q8_1 activation block
constexpr int kTypeQ4_0 = 2, kTypeQ4_1 = 3, kTypeQ8_0 = 8;
constexpr int kGemvWarps = 8;     // warps per GEMV block; 1, 2, 4 or 8 of them (a group) own one row pair
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kBlocksPerSm = 4;   // GEMV grid cap: row pairs beyond it are looped over (the LM head)
constexpr int kItemsPerWarp = 48; // K split: a row pair is spread over enough warps that each has <= 48 items
constexpr int kMaxK = 16384;      // largest GEMV input (shared memory 5 K + K / 4 bytes: 84 KiB at 16384)
constexpr int kEmbedThreads = 256;
constexpr int kArgmaxThreads = 1024;

__host__ __device__ constexpr int block_bytes(int type) {
  return type == kTypeQ4_0 ? 18 : (type == kTypeQ4_1 ? 20 : (type == kTypeQ8_0 ? 34 : 0));
}

// ------------------------------------------------------------------------------------------------ GEMV kernel
// Math: out = W a for up to three matrices ("segments") that share one input activation a of K elements.
// Prologue (per block, into shared memory): a = rmsnorm(x) * g (f32 x), or a = o (fp16), or a = act (f32), then
// quantized to Q8_1 as the CPU engine does: per 32 elements d = amax/127 (kept as f16), q = rint(a * 127/amax),
// s = f16(d * sum q).
// Work split: a group of ksplit warps (1, 2, 4 or 8: the fewest that leave each warp <= 48 items of a row) owns
// one row pair; block i holds 8 / ksplit groups and takes pairs i * groups + g (+ gridDim.x * groups per further
// round). A pair is two output rows that the epilogue needs together (two adjacent rows; a gate row and its up
// row; a RoPE pair). The K/32 blocks of a row are split in quarters ("items", 8 weights: one 32-bit word of Q4
// nibbles or two of Q8 bytes); group lane l (0 .. 32 ksplit - 1) takes items l, l + 32 ksplit, ...; the 4 lanes
// of one block sum their integer dot products with two shuffles, so that each block contributes
// (d_w * d_x) * sumi (+ m_w * s_x) exactly as on the CPU; the lanes' float sums are reduced by shuffles, then
// across the group's warps through shared memory.
// Why so many warps for so little data: a decode GEMV of SmolLM2 is 0.1-0.6 MB, so the time is the latency of a
// chain of dependent instructions, not bandwidth; ncu showed 1 warp per scheduler issuing every ~6 cycles with
// one warp per pair. Splitting K shortens each warp's chain.
// TYPE: the ggml type of every segment, or 0 for mixed segments (a per-row switch).
// Launch: grid min(ceil(n_pairs / groups), 4 * SMs), 256 threads, dynamic shared memory 5 K + K / 4 bytes
// (opt-in above 48 KiB, up to 84 KiB at K = 16384).
enum class Prologue { RmsNorm, F16, F32 };
enum class Epilogue { Store, AddResidual, SwiGlu, QkvRope };

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
  float* out = nullptr;            // Store / AddResidual / SwiGlu: [rows of segment 0]
  // QkvRope epilogue
  const float* bias[3] = {nullptr, nullptr, nullptr};
  __half* q_out = nullptr;         // [n_head * D]
  __half* k_cache = nullptr;       // this layer's [G][max_seq][D]
  __half* v_cache = nullptr;
  int max_seq = 0, head_dim = 0, n_rot = 0, neox = 0;
  const float* inv_freq = nullptr;
  const int* state = nullptr;      // {token, position, ...}
};

struct Act {
  const int* q;    // K int8 values as K/4 words
  const float* d;  // [K/32]
  const float* s;  // [K/32]
};

__device__ __forceinline__ int load_u16x2(const std::uint8_t* p) {  // p is 2-byte aligned (Q4_0, Q8_0 blocks)
  const unsigned short* h = reinterpret_cast<const unsigned short*>(p);
  return static_cast<int>(static_cast<unsigned>(h[0]) | (static_cast<unsigned>(h[1]) << 16));
}

// Programmatic dependent launch (sm_90+): a kernel lets the next one in the stream start (trigger), and a kernel
// launched with programmatic stream serialization reads nothing the previous kernels wrote before wait().
// Elsewhere both are no-ops and the launch attribute is not set (the host checks the compute capability).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The raw data of one item (a quarter of a block) and its block's scales, loaded together and kept as raw bits:
// nothing here may use a loaded value, or the warp would stall on each load before issuing the next one.
struct Item {
  int w0 = 0, w1 = 0;  // Q4: one word of nibbles (w1 unused); Q8_0: two words of int8
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
  } else {  // Q8_0
    const std::uint8_t* b = row + blk * 34;
    it.w0 = load_u16x2(b + 2 + 8 * part);
    it.w1 = load_u16x2(b + 6 + 8 * part);
    it.scales = *reinterpret_cast<const unsigned short*>(b);
  }
  return it;
}

__device__ __forceinline__ float half_bits_to_float(unsigned bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
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
__device__ __forceinline__ float block_value(const Item& it, int blk, int sumi, const Act& a) {
  const float v = half_bits_to_float(it.scales) * a.d[blk] * static_cast<float>(sumi);
  if constexpr (TYPE == kTypeQ4_1) return v + half_bits_to_float(it.scales >> 16) * a.s[blk];
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Type dispatch for one row: TYPE when the kernel has one, else the row's runtime type (warp-uniform).
template <int TYPE>
__device__ __forceinline__ Item load_item_any(int type, const std::uint8_t* row, int blk, int part) {
  if constexpr (TYPE != 0) return load_item<TYPE>(row, blk, part);
  switch (type) {
    case kTypeQ4_0: return load_item<kTypeQ4_0>(row, blk, part);
    case kTypeQ4_1: return load_item<kTypeQ4_1>(row, blk, part);
    default: return load_item<kTypeQ8_0>(row, blk, part);
  }
}
template <int TYPE>
__device__ __forceinline__ int item_dot_any(int type, const Item& it, int blk, int part, const Act& a) {
  if constexpr (TYPE != 0) return item_dot<TYPE>(it, blk, part, a);
  switch (type) {
    case kTypeQ4_0: return item_dot<kTypeQ4_0>(it, blk, part, a);
    case kTypeQ4_1: return item_dot<kTypeQ4_1>(it, blk, part, a);
    default: return item_dot<kTypeQ8_0>(it, blk, part, a);
  }
}
template <int TYPE>
__device__ __forceinline__ float block_value_any(int type, const Item& it, int blk, int sumi, const Act& a) {
  if constexpr (TYPE != 0) return block_value<TYPE>(it, blk, sumi, a);
  return type == kTypeQ4_1 ? block_value<kTypeQ4_1>(it, blk, sumi, a) : block_value<kTypeQ8_0>(it, blk, sumi, a);
}

// kBatch rounds of items per lane and row, loaded into registers before any is used so that their loads are in
// flight together; with <= 48 items per warp one batch covers the row's share.
constexpr int kBatch = 2;

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
template <int TYPE>
__device__ __forceinline__ void consume_batch(const RowPair& rp, int base, int n_items, int gl, int gs,
                                              const Batch& bt, const Act& act, float& acc_a, float& acc_b) {
#pragma unroll
  for (int u = 0; u < kBatch; ++u) {
    if (base + gs * u + gl - (gl & 31) >= n_items) break;  // warp-uniform: the warp's first lane has nothing
    const int it = base + gs * u + gl;
    const bool valid = it < n_items;  // whole groups of 4 lanes are valid or not (n_items % 4 == 0)
    const int blk = it >> 2, part = it & 3;
    int sa = valid ? item_dot_any<TYPE>(rp.type_a, bt.a[u], blk, part, act) : 0;
    int sb = valid && rp.b ? item_dot_any<TYPE>(rp.type_b, bt.b[u], blk, part, act) : 0;
    sa += __shfl_xor_sync(0xffffffffu, sa, 1);
    sa += __shfl_xor_sync(0xffffffffu, sa, 2);
    sb += __shfl_xor_sync(0xffffffffu, sb, 1);
    sb += __shfl_xor_sync(0xffffffffu, sb, 2);
    if (valid && part == 0) {
      acc_a += block_value_any<TYPE>(rp.type_a, bt.a[u], blk, sa, act);
      if (rp.b) acc_b += block_value_any<TYPE>(rp.type_b, bt.b[u], blk, sb, act);
    }
  }
}

// Builds the Q8_1 activation in shared memory from the prologue's source (all threads take part).
// Pass 1 stages the values (x * g for RmsNorm) in shared memory, with every global load of a thread in flight
// at once; pass 2 quantizes, one thread per 8 elements (4 threads per 32-element block, combined by shuffles).
template <Prologue P>
__device__ void build_activation(const GemvParams& p, float* sv, std::int8_t* sq, float* sd, float* ss,
                                 float* red) {
  const int k = p.k;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  float sum = 0.0f;
  // Rounds of kPerThread loads per thread, all issued before any is used.
  constexpr int kPerThread = 16;
  for (int base = 0; base < k; base += kPerThread * kGemvThreads) {
    float x[kPerThread], g[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = base + j * kGemvThreads + tid;
      x[j] = 0.0f;
      g[j] = 1.0f;
      if (i < k) {
        if constexpr (P == Prologue::F16) {
          x[j] = __half2float(static_cast<const __half*>(p.in)[i]);
        } else {
          x[j] = static_cast<const float*>(p.in)[i];
        }
        if constexpr (P == Prologue::RmsNorm) g[j] = p.norm_w[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = base + j * kGemvThreads + tid;
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
    for (int w = 0; w < kGemvWarps; ++w) total += red[w];
    scale = 1.0f / sqrtf(total / static_cast<float>(k) + p.eps);  // ggml: mean, + eps, 1/sqrt
  } else {
    __syncthreads();
  }
  const int n_oct = k / 8;
  for (int base = 0; base < n_oct; base += kGemvThreads) {  // uniform trip count: every lane reaches the shuffles
    const int oct = base + tid;
    const bool valid = oct < n_oct;  // whole groups of 4 threads are valid or not (n_oct % 4 == 0)
    float v[8];
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      v[j] = valid ? sv[oct * 8 + j] * scale : 0.0f;
      amax = fmaxf(amax, fabsf(v[j]));
    }
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
      reinterpret_cast<unsigned*>(sq)[oct * 2] = packed[0];
      reinterpret_cast<unsigned*>(sq)[oct * 2 + 1] = packed[1];
      if ((oct & 3) == 0) {
        sd[oct / 4] = __half2float(__float2half_rn(d));
        ss[oct / 4] = __half2float(__float2half_rn(d * static_cast<float>(qsum)));
      }
    }
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

template <Prologue P, Epilogue E, int TYPE>
__global__ void __launch_bounds__(kGemvThreads) gemv_q8_kernel(GemvParams p) {
  extern __shared__ __align__(16) unsigned char smem[];  // layout: gemv_smem_bytes()
  __shared__ float red[kGemvWarps];
  __shared__ float2 group_sum[kGemvWarps];
  float* sv = reinterpret_cast<float*>(smem);
  std::int8_t* sq = reinterpret_cast<std::int8_t*>(sv + p.k);
  float* sd = reinterpret_cast<float*>(sq + p.k);
  float* ss = sd + p.k / kQK;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_items = p.k / kQK * 4;
  const int ksplit = p.ksplit;
  const int groups = kGemvWarps / ksplit;
  const int group = warp / ksplit, sub = warp % ksplit;
  const int gl = sub * 32 + lane, gs = 32 * ksplit;

  pdl_trigger();
  auto rows_of = [&](const PairRows& r) {
    const Segment& sa = p.seg[r.seg_a];
    const Segment& sb = p.seg[r.seg_b];
    RowPair rp;
    rp.a = sa.w + static_cast<std::size_t>(r.row_a) * sa.row_bytes;
    rp.b = r.row_b >= 0 ? sb.w + static_cast<std::size_t>(r.row_b) * sb.row_bytes : nullptr;
    rp.type_a = sa.type;
    rp.type_b = sb.type;
    return rp;
  };
  // The first batch of this group's first row pair is loaded before waiting for the previous kernel (weights are
  // never written), so its memory latency overlaps the previous kernel's tail and the activation prologue.
  const int first_base = blockIdx.x * groups;
  Batch bt;
  PairRows r{};
  RowPair rp;
  if (first_base + group < p.n_pairs) {
    r = pair_rows<E>(p, first_base + group);
    rp = rows_of(r);
    load_batch<TYPE>(rp, 0, n_items, gl, gs, bt);
  }
  pdl_wait();  // from here on, the previous kernels' outputs (x, o, act, the cache, state) are visible
  build_activation<P>(p, sv, sq, sd, ss, red);
  const Act act{reinterpret_cast<const int*>(sq), sd, ss};

  const int stride = gridDim.x * groups;
  for (int pair_base = first_base; pair_base < p.n_pairs; pair_base += stride) {  // block-uniform
    const int pair = pair_base + group;
    const bool active = pair < p.n_pairs;  // warp-uniform
    const PairRows cur = r;
    const RowPair cur_rp = rp;
    float2 dot = make_float2(0.0f, 0.0f);
    if (active) {
      // The next round's first batch (the LM head loops over its rows) goes out before this one is consumed.
      Batch bt_next;
      if (pair + stride < p.n_pairs) {
        r = pair_rows<E>(p, pair + stride);
        rp = rows_of(r);
        load_batch<TYPE>(rp, 0, n_items, gl, gs, bt_next);
      }
      float acc_a = 0.0f, acc_b = 0.0f;
      consume_batch<TYPE>(cur_rp, 0, n_items, gl, gs, bt, act, acc_a, acc_b);
      for (int base = gs * kBatch; base < n_items; base += gs * kBatch) {
        load_batch<TYPE>(cur_rp, base, n_items, gl, gs, bt);
        consume_batch<TYPE>(cur_rp, base, n_items, gl, gs, bt, act, acc_a, acc_b);
      }
      dot = make_float2(warp_sum(acc_a), warp_sum(acc_b));
      bt = bt_next;
    }
    if (ksplit > 1) {
      if (lane == 0) group_sum[warp] = dot;
      __syncthreads();
      if (sub == 0) {
        for (int w = 1; w < ksplit; ++w) {
          dot.x += group_sum[warp + w].x;
          dot.y += group_sum[warp + w].y;
        }
      }
      __syncthreads();  // group_sum is reused by the next round
    }
    if (!active || sub != 0) continue;
    const std::uint8_t* row_b = cur_rp.b;
    if (lane != 0) continue;
    if constexpr (E == Epilogue::Store) {
      p.out[cur.row_a] = dot.x;
      if (row_b) p.out[cur.row_b] = dot.y;
    } else if constexpr (E == Epilogue::AddResidual) {
      p.out[cur.row_a] += dot.x;
      if (row_b) p.out[cur.row_b] += dot.y;
    } else if constexpr (E == Epilogue::SwiGlu) {
      const float g = dot.x;
      p.out[cur.row_a] = g / (1.0f + expf(-g)) * dot.y;  // silu(gate) * up
    } else {  // QkvRope: bias, rotation, fp16 stores (q buffer, or the cache at the current position)
      float a = dot.x, b = dot.y;
      const float* bias = p.bias[cur.seg_a];
      if (bias) { a += bias[cur.row_a]; b += bias[cur.row_b]; }
      const int pos = p.state[1];
      if (cur.rope_i >= 0) {
        float sn, cs;
        sincosf(static_cast<float>(pos) * p.inv_freq[cur.rope_i], &sn, &cs);
        const float a2 = a * cs - b * sn;
        b = a * sn + b * cs;
        a = a2;
      }
      if (cur.seg_a == 0) {
        p.q_out[cur.row_a] = __float2half_rn(a);
        p.q_out[cur.row_b] = __float2half_rn(b);
      } else {
        const int head = cur.row_a / p.head_dim;  // both rows of a pair are in one head
        __half* cache = (cur.seg_a == 1 ? p.k_cache : p.v_cache) +
                        (static_cast<std::size_t>(head) * p.max_seq + pos) * p.head_dim;
        cache[cur.row_a % p.head_dim] = __float2half_rn(a);
        cache[cur.row_b % p.head_dim] = __float2half_rn(b);
      }
    }
  }
}

// ------------------------------------------------------------------------------------- embedding and argmax
__device__ float dequant(const std::uint8_t* row, int type, int i) {
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

// x = row state[0] of the embedding, dequantized; state[2] = state[1] + 1 (the attention's length).
// Launch: 1 block of kEmbedThreads. An id outside [0, n_vocab) (the host validates ids; this is memory safety
// only) reads row 0.
__global__ void embed_kernel(Segment embd, int n_embd, int* state, float* x) {
  pdl_trigger();  // the first layer's GEMV may start prefetching its weights
  int token = state[0];
  if (token < 0 || token >= embd.rows) token = 0;
  const std::uint8_t* row = embd.w + static_cast<std::size_t>(token) * embd.row_bytes;
  for (int i = threadIdx.x; i < n_embd; i += blockDim.x) x[i] = dequant(row, embd.type, i);
  if (threadIdx.x == 0) state[2] = state[1] + 1;
}

// state[0] = state[3] = the first index of the largest logit (NaN never wins); state[1] += 1 (the next position).
// Launch: 1 block of kArgmaxThreads.
__global__ void argmax_kernel(const float* logits, int n, int* state) {
  __shared__ float s_val[kArgmaxThreads / 32];
  __shared__ int s_idx[kArgmaxThreads / 32];
  float best = -INFINITY;
  int best_i = n;  // n: nothing seen yet
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = logits[i];
    if (v > best || (best_i == n && v == v)) { best = v; best_i = i; }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  auto better = [](float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (better(v, i, best, best_i)) { best = v; best_i = i; }
  }
  if (lane == 0) { s_val[warp] = best; s_idx[warp] = best_i; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) {
      if (better(s_val[w], s_idx[w], best, best_i)) { best = s_val[w]; best_i = s_idx[w]; }
    }
    const int token = best_i == n ? 0 : best_i;  // all NaN: 0
    state[0] = token;
    state[3] = token;
    state[1] += 1;
  }
}

// Dynamic shared memory of the GEMV kernel: staged values (f32), q (int8), d and s (f32 per 32).
std::size_t gemv_smem_bytes(int k) { return static_cast<std::size_t>(k) * (sizeof(float) + 1) + 2 * sizeof(float) * (k / kQK); }

// Above 48 KiB of dynamic shared memory a kernel must opt in (once per kernel, for all its type variants).
template <Prologue P, Epilogue E>
void allow_gemv_smem(int k) {
  const int bytes = static_cast<int>(gemv_smem_bytes(k));
  for (auto kernel : {gemv_q8_kernel<P, E, 0>, gemv_q8_kernel<P, E, kTypeQ4_0>, gemv_q8_kernel<P, E, kTypeQ4_1>,
                      gemv_q8_kernel<P, E, kTypeQ8_0>}) {
    EDGELLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  }
}

template <Prologue P, Epilogue E>
void launch_gemv(GemvParams p, int n_segments, int multiprocessors, bool programmatic, cudaStream_t stream) {
  const int n_items = p.k / kQK * 4;
  p.ksplit = 1;
  while (p.ksplit < kGemvWarps && n_items > kItemsPerWarp * p.ksplit) p.ksplit *= 2;
  const int groups = kGemvWarps / p.ksplit;
  const int blocks = std::min((p.n_pairs + groups - 1) / groups, kBlocksPerSm * multiprocessors);
  int type = p.seg[0].type;
  for (int i = 1; i < n_segments; ++i) {
    if (p.seg[i].type != type) type = 0;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kGemvThreads);
  cfg.dynamicSmemBytes = gemv_smem_bytes(p.k);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic ? 1 : 0;
  switch (type) {
    case kTypeQ4_0: EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_q8_kernel<P, E, kTypeQ4_0>, p)); break;
    case kTypeQ4_1: EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_q8_kernel<P, E, kTypeQ4_1>, p)); break;
    case kTypeQ8_0: EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_q8_kernel<P, E, kTypeQ8_0>, p)); break;
    default: EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, gemv_q8_kernel<P, E, 0>, p)); break;
  }
}

Segment segment(const DeviceMatrix& m) { return Segment{m.data, m.type, m.rows, m.row_bytes}; }

}  // namespace

// ------------------------------------------------------------------------------------------------ host side
struct GpuEngine::Bucket {
  int length_hint = 0;  // the graph is used while n_past + 1 <= length_hint
  std::vector<std::unique_ptr<Fa2DecodeOp>> attention;  // one per layer (its own split workspace)
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::size_t nodes = 0;
  ~Bucket() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

namespace {

std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

void check_matrix(const cpu::WeightView& w, const std::string& name, std::size_t rows, std::size_t cols) {
  const int type = static_cast<int>(w.type);
  if (block_bytes(type) == 0) {
    throw std::invalid_argument("GpuEngine: tensor '" + name + "' has ggml type " + std::to_string(type) +
                                "; the GPU engine runs Q4_0, Q4_1 and Q8_0 matrices (use device=\"cpu\")");
  }
  if (w.data == nullptr || w.rows != rows || w.cols != cols || cols % kQK != 0) {
    throw std::invalid_argument("GpuEngine: tensor '" + name + "' has shape [" + std::to_string(w.rows) + ", " +
                                std::to_string(w.cols) + "], expected [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "] with cols a multiple of 32");
  }
}

}  // namespace

GpuEngine::GpuEngine(const cpu::ModelView& m, bool programmatic_launch)
    : config_(m.config) {
  const cpu::EngineConfig& c = config_;
  const std::size_t E = c.n_embd, H = c.n_head, G = c.n_head_kv, D = c.head_dim, F = c.n_ff, V = c.n_vocab;
  const std::size_t S = c.max_seq;
  if (c.n_layer == 0 || E == 0 || H == 0 || G == 0 || F == 0 || V == 0 || S == 0) {
    throw std::invalid_argument("GpuEngine: every config size must be positive");
  }
  if (H % G != 0) throw std::invalid_argument("GpuEngine: n_head must be a multiple of n_head_kv");
  if (D != 64 && D != 80 && D != 96 && D != 128 && D != 256) {
    throw std::invalid_argument("GpuEngine: head_dim " + std::to_string(D) + " is not one of 64, 80, 96, 128, 256");
  }
  if (c.n_rot % 2 != 0 || c.n_rot > D || c.n_rot == 0) {
    throw std::invalid_argument("GpuEngine: n_rot must be even, positive and <= head_dim");
  }
  if (E > kMaxK || F > kMaxK || H * D > kMaxK) {
    throw std::invalid_argument("GpuEngine: n_embd, n_ff and n_head * head_dim must be <= " + std::to_string(kMaxK));
  }
  if (S > static_cast<std::size_t>(1) << 30) throw std::invalid_argument("GpuEngine: max_seq too large");
  if (m.layers.size() != c.n_layer) throw std::invalid_argument("GpuEngine: layer count differs from n_layer");
  if (m.output_norm == nullptr) throw std::invalid_argument("GpuEngine: missing output_norm");

  int device = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device));
  int cc_major = 0;
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device));
  programmatic_ = programmatic_launch && cc_major >= 9;
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::QkvRope>(static_cast<int>(E));
  allow_gemv_smem<Prologue::F16, Epilogue::AddResidual>(static_cast<int>(H * D));
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::SwiGlu>(static_cast<int>(E));
  allow_gemv_smem<Prologue::F32, Epilogue::AddResidual>(static_cast<int>(F));
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::Store>(static_cast<int>(E));

  // Lay every piece out in one device buffer, then copy.
  struct Piece { const void* host; std::size_t bytes; std::size_t offset; };
  std::vector<Piece> pieces;
  std::size_t total = 0;
  auto add = [&](const void* host, std::size_t bytes) {
    pieces.push_back({host, bytes, total});
    total += align_up(bytes);
    return pieces.size() - 1;
  };
  auto add_matrix = [&](const cpu::WeightView& w, const std::string& name, std::size_t rows, std::size_t cols) {
    check_matrix(w, name, rows, cols);
    const std::size_t row_bytes = cols / kQK * block_bytes(static_cast<int>(w.type));
    return add(w.data, rows * row_bytes);
  };
  auto add_vec = [&](const float* v, std::size_t n) { return v ? add(v, n * sizeof(float)) : SIZE_MAX; };

  const std::size_t qd = H * D, kvd = G * D;
  const std::size_t i_embd = add_matrix(m.tok_embd, "token_embd", V, E);
  const bool tied = m.output.data == m.tok_embd.data;
  const std::size_t i_out = tied ? i_embd : add_matrix(m.output, "output", V, E);
  const std::size_t i_out_norm = add_vec(m.output_norm, E);
  std::vector<float> inv_freq(c.n_rot / 2);
  for (std::size_t i = 0; i < inv_freq.size(); ++i) {
    const double f = std::pow(static_cast<double>(c.rope_base), -2.0 * static_cast<double>(i) / c.n_rot);
    inv_freq[i] = static_cast<float>(m.rope_freqs ? f / m.rope_freqs[i] : f);
  }
  const std::size_t i_freq = add_vec(inv_freq.data(), inv_freq.size());
  struct LayerPieces { std::size_t norm[2], bias[3], w[7]; };
  std::vector<LayerPieces> lp(c.n_layer);
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const cpu::LayerView& L = m.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    if (!L.attn_norm || !L.ffn_norm) throw std::invalid_argument("GpuEngine: " + p + " is missing a norm weight");
    lp[l].norm[0] = add_vec(L.attn_norm, E);
    lp[l].norm[1] = add_vec(L.ffn_norm, E);
    lp[l].bias[0] = add_vec(L.bq, qd);
    lp[l].bias[1] = add_vec(L.bk, kvd);
    lp[l].bias[2] = add_vec(L.bv, kvd);
    lp[l].w[0] = add_matrix(L.wq, p + "attn_q", qd, E);
    lp[l].w[1] = add_matrix(L.wk, p + "attn_k", kvd, E);
    lp[l].w[2] = add_matrix(L.wv, p + "attn_v", kvd, E);
    lp[l].w[3] = add_matrix(L.wo, p + "attn_output", E, qd);
    lp[l].w[4] = add_matrix(L.gate, p + "ffn_gate", F, E);
    lp[l].w[5] = add_matrix(L.up, p + "ffn_up", F, E);
    lp[l].w[6] = add_matrix(L.down, p + "ffn_down", E, F);
  }
  weights_ = std::make_unique<DeviceBuffer>(total);
  for (const Piece& pc : pieces) weights_->copy_from_host(pc.host, pc.bytes, pc.offset, stream_.get());
  auto base = static_cast<const std::uint8_t*>(weights_->data());
  auto fptr = [&](std::size_t i) { return i == SIZE_MAX ? nullptr : reinterpret_cast<const float*>(base + pieces[i].offset); };
  auto mat = [&](std::size_t i, const cpu::WeightView& w) {
    const int type = static_cast<int>(w.type);
    return DeviceMatrix{base + pieces[i].offset, type, static_cast<int>(w.rows), static_cast<int>(w.cols),
                        static_cast<int>(w.cols / kQK * block_bytes(type))};
  };
  tok_embd_ = mat(i_embd, m.tok_embd);
  output_ = tied ? tok_embd_ : mat(i_out, m.output);
  output_norm_ = fptr(i_out_norm);
  inv_freq_ = fptr(i_freq);
  weight_bytes_per_token_ = tok_embd_.row_bytes + static_cast<std::size_t>(output_.rows) * output_.row_bytes;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const cpu::LayerView& L = m.layers[l];
    DeviceLayer d;
    d.attn_norm = fptr(lp[l].norm[0]);
    d.ffn_norm = fptr(lp[l].norm[1]);
    for (int j = 0; j < 3; ++j) d.bias[j] = fptr(lp[l].bias[j]);
    d.wq = mat(lp[l].w[0], L.wq);
    d.wk = mat(lp[l].w[1], L.wk);
    d.wv = mat(lp[l].w[2], L.wv);
    d.wo = mat(lp[l].w[3], L.wo);
    d.gate = mat(lp[l].w[4], L.gate);
    d.up = mat(lp[l].w[5], L.up);
    d.down = mat(lp[l].w[6], L.down);
    for (const DeviceMatrix* w : {&d.wq, &d.wk, &d.wv, &d.wo, &d.gate, &d.up, &d.down}) {
      weight_bytes_per_token_ += static_cast<std::size_t>(w->rows) * w->row_bytes;
    }
    layers_.push_back(d);
  }

  const std::size_t cache_bytes = c.n_layer * G * S * D * sizeof(__half);
  k_cache_ = std::make_unique<DeviceBuffer>(cache_bytes);
  v_cache_ = std::make_unique<DeviceBuffer>(cache_bytes);
  x_ = std::make_unique<DeviceBuffer>(E * sizeof(float));
  q_ = std::make_unique<DeviceBuffer>(qd * sizeof(__half));
  o_ = std::make_unique<DeviceBuffer>(qd * sizeof(__half));
  act_ = std::make_unique<DeviceBuffer>(F * sizeof(float));
  logits_ = std::make_unique<DeviceBuffer>(V * sizeof(float));
  state_ = std::make_unique<DeviceBuffer>(4 * sizeof(int));
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(state_->data(), 0, state_->bytes(), stream_.get()));
  EDGELLM_CUDA_CHECK(cudaMallocHost(&host_io_, 2 * sizeof(int)));
  stream_.synchronize();
}

GpuEngine::~GpuEngine() {
  buckets_.clear();
  if (host_io_) cudaFreeHost(host_io_);
}

std::size_t GpuEngine::device_bytes() const {
  std::size_t n = weights_->bytes() + k_cache_->bytes() + v_cache_->bytes() + x_->bytes() + q_->bytes() + o_->bytes() +
                  act_->bytes() + logits_->bytes() + state_->bytes();
  for (const auto& b : buckets_) {
    for (const auto& op : b->attention) n += op->workspace_bytes();
  }
  return n;
}

void GpuEngine::enqueue_step(Bucket& b, cudaStream_t stream) {
  const cpu::EngineConfig& c = config_;
  const int E = static_cast<int>(c.n_embd), F = static_cast<int>(c.n_ff);
  const int qd = static_cast<int>(c.n_head * c.head_dim), kvd = static_cast<int>(c.n_head_kv * c.head_dim);
  int* state = static_cast<int*>(state_->data());
  float* x = static_cast<float*>(x_->data());
  embed_kernel<<<1, kEmbedThreads, 0, stream>>>(segment(tok_embd_), E, state, x);
  EDGELLM_CUDA_CHECK_LAUNCH("gpu engine embed");
  const std::size_t layer_cache = c.n_head_kv * c.max_seq * c.head_dim;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const DeviceLayer& L = layers_[l];
    GemvParams qkv;
    qkv.seg[0] = segment(L.wq);
    qkv.seg[1] = segment(L.wk);
    qkv.seg[2] = segment(L.wv);
    qkv.k = E;
    qkv.n_pairs = (qd + 2 * kvd) / 2;
    qkv.in = x;
    qkv.norm_w = L.attn_norm;
    qkv.eps = c.rms_eps;
    for (int j = 0; j < 3; ++j) qkv.bias[j] = L.bias[j];
    qkv.q_out = static_cast<__half*>(q_->data());
    qkv.k_cache = static_cast<__half*>(k_cache_->data()) + l * layer_cache;
    qkv.v_cache = static_cast<__half*>(v_cache_->data()) + l * layer_cache;
    qkv.max_seq = static_cast<int>(c.max_seq);
    qkv.head_dim = static_cast<int>(c.head_dim);
    qkv.n_rot = static_cast<int>(c.n_rot);
    qkv.neox = c.rope_neox ? 1 : 0;
    qkv.inv_freq = inv_freq_;
    qkv.state = state;
    launch_gemv<Prologue::RmsNorm, Epilogue::QkvRope>(qkv, 3, multiprocessors_, programmatic_, stream);

    b.attention[l]->launch(stream);

    GemvParams wo;
    wo.seg[0] = segment(L.wo);
    wo.k = qd;
    wo.n_pairs = (E + 1) / 2;
    wo.in = o_->data();
    wo.out = x;
    launch_gemv<Prologue::F16, Epilogue::AddResidual>(wo, 1, multiprocessors_, programmatic_, stream);

    GemvParams up;
    up.seg[0] = segment(L.gate);
    up.seg[1] = segment(L.up);
    up.k = E;
    up.n_pairs = F;
    up.in = x;
    up.norm_w = L.ffn_norm;
    up.eps = c.rms_eps;
    up.out = static_cast<float*>(act_->data());
    launch_gemv<Prologue::RmsNorm, Epilogue::SwiGlu>(up, 2, multiprocessors_, programmatic_, stream);

    GemvParams down;
    down.seg[0] = segment(L.down);
    down.k = F;
    down.n_pairs = (E + 1) / 2;
    down.in = act_->data();
    down.out = x;
    launch_gemv<Prologue::F32, Epilogue::AddResidual>(down, 1, multiprocessors_, programmatic_, stream);
  }
  GemvParams head;
  head.seg[0] = segment(output_);
  head.k = E;
  head.n_pairs = (output_.rows + 1) / 2;
  head.in = x;
  head.norm_w = output_norm_;
  head.eps = c.rms_eps;
  head.out = static_cast<float*>(logits_->data());
  launch_gemv<Prologue::RmsNorm, Epilogue::Store>(head, 1, multiprocessors_, programmatic_, stream);
  argmax_kernel<<<1, kArgmaxThreads, 0, stream>>>(static_cast<const float*>(logits_->data()), output_.rows, state);
  EDGELLM_CUDA_CHECK_LAUNCH("gpu engine argmax");
  EDGELLM_CUDA_CHECK(cudaMemcpyAsync(host_io_, state, sizeof(int), cudaMemcpyDeviceToHost, stream));
}

GpuEngine::Bucket& GpuEngine::bucket_for(std::size_t length) {
  for (auto& b : buckets_) {
    if (length <= static_cast<std::size_t>(b->length_hint)) return *b;
  }
  // Buckets 256, 1024, 4096, ... (x4), the last one max_seq; each captured once, on first use.
  std::size_t hint = 256;
  while (hint < length) hint *= 4;
  hint = std::min(hint, config_.max_seq);
  auto b = std::make_unique<Bucket>();
  b->length_hint = static_cast<int>(hint);
  const cpu::EngineConfig& c = config_;
  Fa2DecodeShape shape;
  shape.batch = 1;
  shape.q_heads = static_cast<int>(c.n_head);
  shape.kv_heads = static_cast<int>(c.n_head_kv);
  shape.head_dim = static_cast<int>(c.head_dim);
  shape.max_seq = static_cast<int>(c.max_seq);
  shape.dtype = DType::F16;
  const std::size_t layer_cache = c.n_head_kv * c.max_seq * c.head_dim * sizeof(__half);
  const auto k_base = reinterpret_cast<std::uintptr_t>(k_cache_->data());
  const auto v_base = reinterpret_cast<std::uintptr_t>(v_cache_->data());
  const auto lens = reinterpret_cast<std::uintptr_t>(static_cast<int*>(state_->data()) + 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    b->attention.push_back(std::make_unique<Fa2DecodeOp>(
        shape, reinterpret_cast<std::uintptr_t>(q_->data()), k_base + l * layer_cache, v_base + l * layer_cache, lens,
        reinterpret_cast<std::uintptr_t>(o_->data()), scale, b->length_hint, 0, 0));
    // Plain launches for the attention (and the argmax): launching them programmatically changed the engine's
    // outputs from run to run on the H200 (a race we have not found) and was no faster; the waiting hooks it needed
    // inside fa2_decode also slowed the kernel by 5-50% in the kernels suite, so they were removed.
  }
  cudaStream_t s = stream_.get();
  EDGELLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue_step(*b, s);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(s, &broken);
    if (broken) cudaGraphDestroy(broken);
    throw;
  }
  EDGELLM_CUDA_CHECK(cudaStreamEndCapture(s, &b->graph));
  EDGELLM_CUDA_CHECK(cudaGraphInstantiate(&b->exec, b->graph, 0));
  EDGELLM_CUDA_CHECK(cudaGraphGetNodes(b->graph, nullptr, &b->nodes));
  buckets_.push_back(std::move(b));
  return *buckets_.back();
}

void GpuEngine::check_tokens(const long long* tokens, std::size_t n) const {
  cpu::check_decode_tokens(config_, n_past_, tokens, n);
}

long long GpuEngine::step(long long token, float* logits) {
  check_tokens(&token, 1);
  Bucket& b = bucket_for(n_past_ + 1);
  cudaStream_t s = stream_.get();
  last_h2d_bytes_ = 0;
  if (!device_state_current_ || token != last_argmax_) {
    // The device holds the position n_past_ unless truncate() changed it; write what differs.
    host_io_[0] = static_cast<int>(token);
    host_io_[1] = static_cast<int>(n_past_);
    const std::size_t bytes = device_state_current_ ? sizeof(int) : 2 * sizeof(int);
    EDGELLM_CUDA_CHECK(cudaMemcpyAsync(state_->data(), host_io_, bytes, cudaMemcpyHostToDevice, s));
    last_h2d_bytes_ = bytes;
  }
  EDGELLM_CUDA_CHECK(cudaGraphLaunch(b.exec, s));
  EDGELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  last_argmax_ = host_io_[0];
  last_d2h_bytes_ = sizeof(int);
  last_graph_nodes_ = b.nodes;
  ++n_past_;
  device_state_current_ = true;
  if (logits) {
    EDGELLM_CUDA_CHECK(cudaMemcpy(logits, logits_->data(), config_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost));
    last_d2h_bytes_ += config_.n_vocab * sizeof(float);
  }
  return last_argmax_;
}

long long GpuEngine::prefill(const long long* tokens, std::size_t n, float* logits) {
  if (n == 0) throw std::invalid_argument("GpuEngine: no tokens to prefill");
  check_tokens(tokens, n);
  long long best = -1;
  for (std::size_t i = 0; i < n; ++i) best = step(tokens[i], i + 1 == n ? logits : nullptr);
  return best;
}

void GpuEngine::truncate(std::size_t n) {
  if (n > n_past_) {
    throw std::invalid_argument("truncate: " + std::to_string(n) + " > n_past " + std::to_string(n_past_));
  }
  n_past_ = n;
  device_state_current_ = false;  // the next step writes token and position
}

}  // namespace edgellm::cuda
