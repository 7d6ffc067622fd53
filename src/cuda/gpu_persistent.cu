// The GPU engine's persistent step (gpu_persistent.h): the whole decode step in one cooperative kernel.
#include "gpu_persistent.h"

#include <algorithm>
#include <stdexcept>

#include "cuda_check.h"
#include "gemv_q8.cuh"

namespace edgellm::cuda {
namespace {

using namespace gemv_q8;

constexpr int kWarps = kPersistentThreads / 32;
constexpr int kMaxGqa = kPersistentMaxGqa;
constexpr int kMinChunk = 64;    // keys per attention unit: at least this many ...
constexpr int kMaxChunk = 1024;  // ... and at most this many (the scores live in shared memory)

// Grid-wide barrier over a counter that only grows during the launch (target: the arrivals expected so far).
// Release on arrival and a fence after the (relaxed) spin make every block's writes before the barrier visible to
// every block after it (the pattern of cooperative groups' grid sync); data written by other blocks is read with
// __ldcg. trace (block 0, thread 0, when not null): the global timer at arrival and at departure.
__device__ __forceinline__ void grid_barrier(unsigned* counter, unsigned& target, unsigned long long*& trace) {
  __syncthreads();
  target += gridDim.x;
  if (threadIdx.x == 0) {
    if (trace) *trace++ = globaltimer_ns();
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
    unsigned seen = 0;
    do {
      asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    } while (seen < target);
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
    if (trace) *trace++ = globaltimer_ns();
  }
  __syncthreads();
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---------------------------------------------------------------------------------------------- attention
// Keys per unit for a sequence of seq keys: enough units to give every block about one (G units per chunk).
__host__ __device__ inline int attn_chunk(int seq, int n_kv, int n_blocks) {
  int chunk = (seq * n_kv + n_blocks - 1) / n_blocks;
  chunk = (chunk + 31) / 32 * 32;
  return chunk < kMinChunk ? kMinChunk : (chunk > kMaxChunk ? kMaxChunk : chunk);
}

// Shared memory of the attention stage (floats): q [r][D], scores [r][kMaxChunk], (max, sum) [2][kMaxGqa],
// the PV partial sums [n_sub][r][D], the merge weights [r][max_chunks], one flag.
__host__ __device__ inline std::size_t attn_smem_floats(int r, int d, int max_chunks) {
  const int n_sub = kPersistentThreads / (d / 2);
  return static_cast<std::size_t>(r) * d + static_cast<std::size_t>(r) * kMaxChunk + 2 * kMaxGqa +
         static_cast<std::size_t>(n_sub) * r * d + static_cast<std::size_t>(r) * max_chunks + 4;
}

// Math (per q head h of kv head g = h / r): o_h = sum_j softmax_j(scale * q_h . k_j) v_j over keys 0 .. seq-1,
// fp16 q/K/V, f32 arithmetic. A unit (g, chunk c) handles keys [c * chunk, ...): scores by warps (4 keys per warp
// per round, lanes over dimension pairs, shuffle sums), softmax per head by warp h, P.V by threads (dimension pair,
// key subset), summed over subsets in shared memory. One chunk: o written directly. Several: each unit writes
// its unnormalized sums with (max, sum); the last unit of kv head g (atomic counter, reset by it) merges them:
// o = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M) l_c.
__device__ void attention_stage(const PersistentStep& P, int layer, int seq, float* smem) {
  const int G = P.n_head_kv, r = P.n_head / G, D = P.head_dim, D2 = D / 2;
  const int chunk = attn_chunk(seq, G, gridDim.x);
  const int n_chunks = (seq + chunk - 1) / chunk;
  const int n_sub = kPersistentThreads / D2;
  float* sQ = smem;                      // [r][D]
  float* sS = sQ + r * D;                // [r][kMaxChunk]
  float* sML = sS + r * kMaxChunk;       // m [kMaxGqa], l [kMaxGqa]
  float2* sR = reinterpret_cast<float2*>(sML + 2 * kMaxGqa);  // [n_sub][r][D2]
  float* sW = reinterpret_cast<float*>(sR + n_sub * r * D2);   // [r][max_chunks]
  int* s_flag = reinterpret_cast<int*>(sW + r * P.attn_max_chunks);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const std::size_t layer_cache = static_cast<std::size_t>(G) * P.max_seq * D;
  const float2* sQ2 = reinterpret_cast<const float2*>(sQ);
  float2* out2 = reinterpret_cast<float2*>(P.o);
  float2* part2 = reinterpret_cast<float2*>(P.attn_partial);

  for (int u = blockIdx.x; u < G * n_chunks; u += gridDim.x) {
    const int g = u % G, c = u / G;
    const int k0 = c * chunk, n = min(chunk, seq - k0);
    const __half* K = P.k_cache + layer * layer_cache + (static_cast<std::size_t>(g) * P.max_seq + k0) * D;
    const __half* V = P.v_cache + layer * layer_cache + (static_cast<std::size_t>(g) * P.max_seq + k0) * D;
    for (int t = threadIdx.x; t < r * D; t += kPersistentThreads) sQ[t] = __half2float(__ldcg(P.q + g * r * D + t));
    __syncthreads();

    // Scores: warp w takes keys 4w .. 4w+3, + 4 * kWarps per round; all 4 keys' loads go out together.
    for (int j0 = warp * 4; j0 < n; j0 += kWarps * 4) {
      __half2 kv[4][4];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const int pp = lane + 32 * s;
          kv[jj][s] = (j0 + jj < n && pp < D2)
                          ? __ldcg(reinterpret_cast<const __half2*>(K + static_cast<std::size_t>(j0 + jj) * D) + pp)
                          : __float2half2_rn(0.0f);
        }
      }
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        float acc[kMaxGqa];
#pragma unroll
        for (int i = 0; i < kMaxGqa; ++i) acc[i] = 0.0f;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const int pp = lane + 32 * s;
          if (pp < D2) {
            const float2 kf = __half22float2(kv[jj][s]);
#pragma unroll
            for (int i = 0; i < kMaxGqa; ++i) {
              if (i < r) {
                const float2 qf = sQ2[i * D2 + pp];
                acc[i] += qf.x * kf.x + qf.y * kf.y;
              }
            }
          }
        }
#pragma unroll
        for (int i = 0; i < kMaxGqa; ++i) {
          if (i < r) {
            const float v = warp_sum(acc[i]);
            if (lane == 0 && j0 + jj < n) sS[i * kMaxChunk + j0 + jj] = v * P.attn_scale;
          }
        }
      }
    }
    __syncthreads();

    // Softmax over the chunk, per head (warp i): p = e^(s - m), l = sum p.
    if (warp < r) {
      float* s = sS + warp * kMaxChunk;
      float m = -INFINITY;
      for (int j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
      m = warp_max(m);
      float l = 0.0f;
      for (int j = lane; j < n; j += 32) {
        const float p = expf(s[j] - m);
        s[j] = p;
        l += p;
      }
      l = warp_sum(l);
      if (lane == 0) {
        sML[warp] = m;
        sML[kMaxGqa + warp] = l;
      }
    }
    __syncthreads();

    // P.V: thread (dimension pair dp, key subset ks) sums keys ks, ks + n_sub, ...
    {
      const int dp = threadIdx.x % D2, ks = threadIdx.x / D2;
      if (ks < n_sub) {
        float2 acc[kMaxGqa];
#pragma unroll
        for (int i = 0; i < kMaxGqa; ++i) acc[i] = make_float2(0.0f, 0.0f);
#pragma unroll 4
        for (int j = ks; j < n; j += n_sub) {
          const float2 v = __half22float2(__ldcg(reinterpret_cast<const __half2*>(V + static_cast<std::size_t>(j) * D) + dp));
#pragma unroll
          for (int i = 0; i < kMaxGqa; ++i) {
            if (i < r) {
              const float p = sS[i * kMaxChunk + j];
              acc[i].x += p * v.x;
              acc[i].y += p * v.y;
            }
          }
        }
#pragma unroll
        for (int i = 0; i < kMaxGqa; ++i) {
          if (i < r) sR[(ks * r + i) * D2 + dp] = acc[i];
        }
      }
    }
    __syncthreads();

    const std::size_t part_row = static_cast<std::size_t>(D2 + 1);  // float2s per (chunk, head) record
    auto part_at = [&](int cc, int i) { return part2 + ((static_cast<std::size_t>(g) * P.attn_max_chunks + cc) * r + i) * part_row; };
    for (int idx = threadIdx.x; idx < r * D2; idx += kPersistentThreads) {
      const int i = idx / D2, dp = idx % D2;
      float2 sum = make_float2(0.0f, 0.0f);
      for (int s = 0; s < n_sub; ++s) {
        const float2 v = sR[(s * r + i) * D2 + dp];
        sum.x += v.x;
        sum.y += v.y;
      }
      if (n_chunks == 1) {
        const float inv = 1.0f / sML[kMaxGqa + i];
        out2[(g * r + i) * D2 + dp] = make_float2(sum.x * inv, sum.y * inv);
      } else {
        part_at(c, i)[dp] = sum;
      }
    }
    if (n_chunks > 1) {
      if (threadIdx.x < r) part_at(c, threadIdx.x)[D2] = make_float2(sML[threadIdx.x], sML[kMaxGqa + threadIdx.x]);
      __syncthreads();
      if (threadIdx.x == 0) {
        __threadfence();  // this unit's partial before its arrival
        const unsigned prev = atomicAdd(P.sync + 1 + g, 1u);
        *s_flag = prev == static_cast<unsigned>(n_chunks - 1);
      }
      __syncthreads();
      if (*s_flag) {  // the last unit of kv head g: merge every chunk
        __threadfence();
        // Merge weights w[i][c] = e^(m_c - M_i) / L_i (warp i), then o = sum_c w[i][c] acc_c by all threads.
        if (warp < r) {
          float M = -INFINITY;
          for (int cc = lane; cc < n_chunks; cc += 32) M = fmaxf(M, __ldcg(&part_at(cc, warp)[D2].x));
          M = warp_max(M);
          float L = 0.0f;
          for (int cc = lane; cc < n_chunks; cc += 32) {
            const float2 ml = __ldcg(&part_at(cc, warp)[D2]);
            const float e = expf(ml.x - M);
            sW[warp * P.attn_max_chunks + cc] = e;
            L += e * ml.y;
          }
          L = warp_sum(L);
          __syncwarp();
          for (int cc = lane; cc < n_chunks; cc += 32) sW[warp * P.attn_max_chunks + cc] /= L;
        }
        __syncthreads();
        // Thread (output idx, chunk subset cs) sums chunks cs, cs + n_cs, ...; subsets combined in sR.
        const int n_out = r * D2, n_cs = max(1, kPersistentThreads / n_out);
        for (int t = threadIdx.x; t < n_out * n_cs; t += kPersistentThreads) {
          const int idx = t % n_out, cs = t / n_out;
          const int i = idx / D2, dp = idx % D2;
          float2 sum = make_float2(0.0f, 0.0f);
#pragma unroll 4
          for (int cc = cs; cc < n_chunks; cc += n_cs) {
            const float2 v = __ldcg(&part_at(cc, i)[dp]);
            const float w = sW[i * P.attn_max_chunks + cc];
            sum.x += w * v.x;
            sum.y += w * v.y;
          }
          sR[cs * n_out + idx] = sum;
        }
        __syncthreads();
        for (int t = threadIdx.x; t < n_out; t += kPersistentThreads) {
          float2 sum = make_float2(0.0f, 0.0f);
          for (int s = 0; s < n_cs; ++s) {
            sum.x += sR[s * n_out + t].x;
            sum.y += sR[s * n_out + t].y;
          }
          out2[g * n_out + t] = sum;
        }
        if (threadIdx.x == 0) P.sync[1 + g] = 0;  // for the next layer (ordered by the grid barrier after this)
      }
    }
    __syncthreads();  // shared memory is reused by the next unit
  }
}

// ------------------------------------------------------------------------------------------------ argmax
// The block's best key into the step's slot (the grid's maximum once every block has added its own).
__device__ void block_argmax_to_global(const ArgmaxAcc& best, unsigned long long* slot) {
  const unsigned long long key = block_argmax_key<kWarps>(best);
  if (threadIdx.x == 0 && key != 0ull) atomicMax(slot, key);
}

// -------------------------------------------------------------------------------------------------- kernel
// LT: the ggml type of every layer matrix (0: mixed), HT: of the output matrix (0: any).
template <int LT, int HT>
__global__ void __launch_bounds__(kPersistentThreads, 1) decode_step_kernel(const __grid_constant__ PersistentStep P) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int block = blockIdx.x, n_blocks = gridDim.x;
  unsigned target = 0;
  const int pos = __ldcg(P.state + 1);
  const int seq = pos + 1;
  GemvCursor cur;
  unsigned long long* trace = block == 0 && threadIdx.x == 0 ? P.trace : nullptr;
  if (trace) *trace++ = globaltimer_ns();
  const GemvParams* G = P.gemv;  // [4 per layer: qkv, o-proj, gate/up, down] + the LM head

  {  // embed (and the first QKV's weights)
    gemv_prefetch<Epilogue::QkvRope, LT, kWarps>(G[0], block, cur);
    int token = __ldcg(P.state);
    if (token < 0 || token >= P.tok_embd.rows) token = 0;  // memory safety only: the host validates ids
    const std::uint8_t* row = P.tok_embd.data + static_cast<std::size_t>(token) * P.tok_embd.row_bytes;
    for (int i = block * kPersistentThreads + threadIdx.x; i < P.n_embd; i += n_blocks * kPersistentThreads) {
      P.x[i] = dequant(row, P.tok_embd.type, i);
    }
    grid_barrier(P.sync, target, trace);
  }
  for (int l = 0; l < P.n_layer; ++l) {
    const GemvParams* g = G + 4 * l;
    gemv_compute<Prologue::RmsNorm, Epilogue::QkvRope, LT, kWarps, true>(g[0], block, n_blocks, cur,
                                                                    gemv_smem(smem, g[0].k, kWarps), nullptr);
    grid_barrier(P.sync, target, trace);
    attention_stage(P, l, seq, reinterpret_cast<float*>(smem));
    gemv_prefetch<Epilogue::AddResidual, LT, kWarps>(g[1], block, cur);
    grid_barrier(P.sync, target, trace);
    gemv_compute<Prologue::F32, Epilogue::AddResidual, LT, kWarps, true>(g[1], block, n_blocks, cur,
                                                                    gemv_smem(smem, g[1].k, kWarps), nullptr);
    gemv_prefetch<Epilogue::SwiGlu, LT, kWarps>(g[2], block, cur);
    grid_barrier(P.sync, target, trace);
    gemv_compute<Prologue::RmsNorm, Epilogue::SwiGlu, LT, kWarps, true>(g[2], block, n_blocks, cur,
                                                                  gemv_smem(smem, g[2].k, kWarps), nullptr);
    gemv_prefetch<Epilogue::AddResidual, LT, kWarps>(g[3], block, cur);
    grid_barrier(P.sync, target, trace);
    gemv_compute<Prologue::F32, Epilogue::AddResidual, LT, kWarps, true>(g[3], block, n_blocks, cur,
                                                                    gemv_smem(smem, g[3].k, kWarps), nullptr);
    if (l + 1 < P.n_layer) {
      gemv_prefetch<Epilogue::QkvRope, LT, kWarps>(g[4], block, cur);
    } else {
      gemv_prefetch<Epilogue::StoreArgmax, HT, kWarps>(g[4], block, cur);
    }
    grid_barrier(P.sync, target, trace);
  }
  const GemvParams& head = G[4 * P.n_layer];
  ArgmaxAcc best;
  gemv_compute<Prologue::RmsNorm, Epilogue::StoreArgmax, HT, kWarps, true>(head, block, n_blocks, cur,
                                                                      gemv_smem(smem, head.k, kWarps), &best);
  block_argmax_to_global(best, P.argmax);
  grid_barrier(P.sync, target, trace);
  if (block == 0 && threadIdx.x == 0) {
    const int token = argmax_key_index(__ldcg(P.argmax));
    P.state[0] = token;
    P.state[1] = pos + 1;
    P.state[2] = seq;
    P.state[3] = token;
  }
}

using KernelFn = void (*)(PersistentStep);

KernelFn kernel_for(int layer_type, int head_type) {
  const bool q8_head = head_type == kTypeQ8_0;
  switch (layer_type) {
    case kTypeQ4_0: return q8_head ? decode_step_kernel<kTypeQ4_0, kTypeQ8_0> : decode_step_kernel<kTypeQ4_0, 0>;
    case kTypeQ4_1: return q8_head ? decode_step_kernel<kTypeQ4_1, kTypeQ8_0> : decode_step_kernel<kTypeQ4_1, 0>;
    case kTypeQ8_0: return q8_head ? decode_step_kernel<kTypeQ8_0, kTypeQ8_0> : decode_step_kernel<kTypeQ8_0, 0>;
    default: return q8_head ? decode_step_kernel<0, kTypeQ8_0> : decode_step_kernel<0, 0>;
  }
}

}  // namespace

int persistent_attn_max_chunks(int n_head_kv, int max_seq, int n_blocks) {
  // chunk >= ceil(seq * G / n_blocks) gives <= ceil(n_blocks / G) chunks; the kMaxChunk cap <= ceil(max_seq / kMaxChunk).
  return std::max((n_blocks + n_head_kv - 1) / n_head_kv, (max_seq + kMaxChunk - 1) / kMaxChunk) + 1;
}

std::size_t persistent_smem_bytes(const cpu::EngineConfig& c, int n_blocks) {
  const int E = static_cast<int>(c.n_embd), F = static_cast<int>(c.n_ff);
  const int HD = static_cast<int>(c.n_head * c.head_dim);
  const int G = static_cast<int>(c.n_head_kv), r = static_cast<int>(c.n_head / c.n_head_kv);
  const int max_chunks = persistent_attn_max_chunks(G, static_cast<int>(c.max_seq), n_blocks);
  std::size_t bytes = attn_smem_floats(r, static_cast<int>(c.head_dim), max_chunks) * sizeof(float);
  for (int k : {E, F, HD}) bytes = std::max(bytes, gemv_smem_bytes(k, kWarps));
  return (bytes + 15) / 16 * 16;
}

bool persistent_fits(const cpu::EngineConfig& c, int n_blocks) {
  const std::size_t smem = persistent_smem_bytes(c, n_blocks);
  int device = 0, optin = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > static_cast<std::size_t>(optin)) return false;
  for (int lt : {0, kTypeQ4_0, kTypeQ4_1, kTypeQ8_0}) {
    for (int ht : {0, kTypeQ8_0}) {
      const KernelFn fn = kernel_for(lt, ht);
      EDGELLM_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
      int per_sm = 0;
      EDGELLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kPersistentThreads, smem));
      if (per_sm < 1) return false;
    }
  }
  return true;
}

void launch_persistent_step(const PersistentStep& p, int layer_type, int head_type, int n_blocks, std::size_t smem,
                            cudaStream_t stream) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(n_blocks);
  cfg.blockDim = dim3(kPersistentThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;  // all blocks resident at once (the grid barriers need it)
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel_for(layer_type, head_type), p));
}

}  // namespace edgellm::cuda
