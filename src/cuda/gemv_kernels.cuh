// Kernels of the GEMV / fused RMSNorm + GEMV family (math and limits: fused_rmsnorm_gemv.h). Included by
// gemv_f16.cu and gemv_bf16.cu, which instantiate launch_gemv_for_weight<> for one weight dtype each (two
// translation units so the ~40 instantiations of each compile in parallel).
//
// Launch shapes:
// R = rows_per_group(MAXB): 2 for batch 1, 4 for batches 2..8.
//   vector, KSPLIT == 1 ("warp"):  block = 32 * wpb threads (wpb = 1..8 warps, chosen by the host so that small
//                                  M still spreads over every SM), grid = ceil(M / (R * wpb)); warp w of block
//                                  i owns rows R * (i * wpb + w) + {0 .. R-1}. No shared memory.
//   vector, KSPLIT == 8 ("block"): block = 256 threads, grid = ceil(M / R); block i owns rows R*i + {0 .. R-1}
//                                  and thread t reads chunks t, t + 256, ...; static shared memory 8 * NV floats
//                                  (NV = R * MAXB + MAXB <= 40: fixed by the template, independent of K and M).
//   shared (batch 1, K <= 8192):   block = 256 threads, grid = ceil(M / (R * 8)); warp w of block i owns rows
//                                  R * (8 i + w) + {0 .. R-1}; x staged once per block in K * 4 bytes of dynamic
//                                  shared memory.
//   scalar:                        block = 256 threads, grid = ceil(M / 8); one warp per row, element loads.
// A "chunk" is 8 consecutive elements of a row (16 bytes of fp16/bf16 weights). The vector kernels need
// K % 8 == 0 and 16-byte aligned W, x and g (the host checks; "auto" uses the scalar kernel otherwise).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "fused_rmsnorm_gemv.h"

namespace edgellm::cuda::gemv_detail {

constexpr int kWarpSize = 32;
// Batch bound of the kernel instantiated for a runtime batch: 1, 4 or 8.
constexpr int max_batch_for(int batch) { return batch == 1 ? 1 : (batch <= 4 ? 4 : 8); }
// Rows per warp ("warp") or per block ("block"): each x chunk (loaded, converted, squared for the norm,
// multiplied by g) is reused for this many rows. Batch 1 takes 2 rows (more row groups for small M); bigger
// batches take 4, since their per-chunk activation work (MAXB x 8 conversions, FMULs and x^2 FMAs) would
// otherwise rival the weight bandwidth.
constexpr int rows_per_group(int max_batch) { return max_batch == 1 ? 2 : 4; }
constexpr int kSplitWarps = 8;    // "block": warps splitting K within a block
constexpr int kChunkElems = 8;    // one 16-byte load of fp16/bf16
constexpr int kScalarWarps = 8;   // "scalar": warps (rows) per block

// "shared": x staged as fp32 (K <= kGemvSharedMaxK, fused_rmsnorm_gemv.h).
constexpr std::size_t shared_smem_bytes(std::int64_t k) { return static_cast<std::size_t>(k) * sizeof(float); }

struct GemvArgs {
  const void* w;
  const void* x;
  const void* g;  // used only when the kernel's NORM is true
  void* y;
  std::int64_t m;
  std::int64_t k;
  int batch;
  float eps;
};

// ------------------------------------------------------------------------------------ element conversions
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(float v) { return v; }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }

__device__ __forceinline__ void unpack8(const uint4& v, __half, float out[8]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void unpack8(const uint4& v, __nv_bfloat16, float out[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// Weights are read exactly once: bypass L1 (keep it for x and g, which every warp re-reads) and do not
// let the compiler assume anything but a plain read-only load.
__device__ __forceinline__ uint4 load_weights_streaming(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Chunk `c` (elements 8c .. 8c+7) of an activation row, as floats. x and g are small and re-read by every
// warp, so they go through the read-only (L1-cached) path.
template <typename TX>
__device__ __forceinline__ void load_act8(const TX* row, int c, float out[8]) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(row) + c);
  unpack8(v, TX{}, out);
}
template <>
__device__ __forceinline__ void load_act8<float>(const float* row, int c, float out[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(row) + 2 * c);
  const float4 b = __ldg(reinterpret_cast<const float4*>(row) + 2 * c + 1);
  out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
  out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float inv_rms(float sum_sq, std::int64_t k, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(k) + eps);
}

// The R rows' chunks c0 + u * stride (u < U) into registers, all loads in flight at once; chunks at or past n are
// zeros (never multiplied: the callers test c < n).
template <int R, int U>
__device__ __forceinline__ void load_weight_batch(uint4 (&wv)[R][U], const uint4* const (&wrow)[R], int c0, int stride,
                                                  int n) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = c0 + u * stride;
#pragma unroll
    for (int r = 0; r < R; ++r) wv[r][u] = c < n ? load_weights_streaming(wrow[r] + c) : make_uint4(0, 0, 0, 0);
  }
}

// Row pointers (in 16-byte chunks) of the R rows from row0; a row past the end (odd M, or a warp with no rows)
// re-reads the last row instead of branching in the loops; it is never stored.
template <int R>
__device__ __forceinline__ void weight_rows(const uint4* (&wrow)[R], const void* w, std::int64_t row0, std::int64_t m,
                                            int n) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const std::int64_t row = row0 + r < m ? row0 + r : m - 1;
    wrow[r] = static_cast<const uint4*>(w) + row * n;
  }
}

// ------------------------------------------------------------------------------------------ vector kernel
// MAXB: compile-time bound on the batch (1, 4 or 8; the runtime batch <= MAXB). KSPLIT: 1 ("warp") or
// kSplitWarps ("block"). NORM: fused RMSNorm on.
template <typename TW, typename TX, int MAXB, bool NORM, int KSPLIT>
__global__ void __launch_bounds__(256) gemv_vector_kernel(GemvArgs a) {
  constexpr int R = rows_per_group(MAXB);
  // Chunks per row a thread loads before using any: R * U 16-byte loads in flight per thread. Fewer for big
  // batches, whose per-chunk x registers (MAXB * 8 floats) would otherwise spill.
  constexpr int U = MAXB >= 4 ? 2 : 4;
  constexpr int NACC = R * MAXB;
  constexpr int NV = NACC + (NORM ? MAXB : 0);

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  std::int64_t row0;
  int t;                   // this thread's first chunk
  constexpr int T = kWarpSize * KSPLIT;  // threads sharing one row group (chunk stride)
  if constexpr (KSPLIT == 1) {
    row0 = (static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / kWarpSize) + warp) * R;
    t = lane;
  } else {
    row0 = static_cast<std::int64_t>(blockIdx.x) * R;
    t = threadIdx.x;
  }
  // Uniform per warp (KSPLIT == 1) or per block (KSPLIT > 1, before any barrier): no divergent exit.
  if (row0 >= a.m) return;

  const int n = static_cast<int>(a.k / kChunkElems);  // chunks per row
  const TX* x = static_cast<const TX*>(a.x);
  const TX* g = static_cast<const TX*>(a.g);
  const int batch = a.batch;
  const uint4* wrow[R];
  weight_rows(wrow, a.w, row0, a.m, n);

  float acc[R][MAXB];
  float sum_sq[MAXB];
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    sum_sq[b] = 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r][b] = 0.0f;
  }

  for (int c0 = t; c0 < n; c0 += T * U) {
    uint4 wv[R][U];
    load_weight_batch(wv, wrow, c0, T, n);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * T;
      if (c < n) {
        float wf[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) unpack8(wv[r][u], TW{}, wf[r]);
        float gf[8];
        if constexpr (NORM) load_act8(g, c, gf);
#pragma unroll
        for (int b = 0; b < MAXB; ++b) {
          if (b < batch) {
            float xf[8];
            load_act8(x + b * a.k, c, xf);
            if constexpr (NORM) {
#pragma unroll
              for (int j = 0; j < 8; ++j) {
                sum_sq[b] = fmaf(xf[j], xf[j], sum_sq[b]);
                xf[j] *= gf[j];
              }
            }
#pragma unroll
            for (int r = 0; r < R; ++r) {
#pragma unroll
              for (int j = 0; j < 8; ++j) acc[r][b] = fmaf(wf[r][j], xf[j], acc[r][b]);
            }
          }
        }
      }
    }
  }

  // Butterfly reductions: every lane ends with every warp total.
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    if constexpr (NORM) sum_sq[b] = warp_sum(sum_sq[b]);
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r][b] = warp_sum(acc[r][b]);
  }

  TX* y = static_cast<TX*>(a.y);
  if constexpr (KSPLIT == 1) {
    // Lane r * MAXB + b stores y[b, row0 + r] (compile-time register indices: no local memory).
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int b = 0; b < MAXB; ++b) {
        if (lane == r * MAXB + b && b < batch && row0 + r < a.m) {
          const float scale = NORM ? inv_rms(sum_sq[b], a.k, a.eps) : 1.0f;
          y[b * a.m + row0 + r] = from_f32<TX>(acc[r][b] * scale);
        }
      }
    }
  } else {
    __shared__ float partial[KSPLIT][NV];
    if (lane == 0) {
#pragma unroll
      for (int b = 0; b < MAXB; ++b) {
#pragma unroll
        for (int r = 0; r < R; ++r) partial[warp][r * MAXB + b] = acc[r][b];
        if constexpr (NORM) partial[warp][NACC + b] = sum_sq[b];
      }
    }
    __syncthreads();
    const int v = threadIdx.x;
    if (v < NACC) {
      const int r = v / MAXB;
      const int b = v % MAXB;
      if (b < batch && row0 + r < a.m) {
        float total = 0.0f;
        float total_sq = 0.0f;
#pragma unroll
        for (int w = 0; w < KSPLIT; ++w) {
          total += partial[w][v];
          if constexpr (NORM) total_sq += partial[w][NACC + b];
        }
        const float scale = NORM ? inv_rms(total_sq, a.k, a.eps) : 1.0f;
        y[b * a.m + row0 + r] = from_f32<TX>(total * scale);
      }
    }
  }
}

// ----------------------------------------------------------------------------------------- shared kernel
// Batch 1, K <= kGemvSharedMaxK: the "warp" kernel's work split (warp w of block i owns rows R (8 i + w) + {0, 1}),
// but the activation work is done once per block instead of once per warp: each warp first issues its first
// U chunks of weight loads, then the block's 256 threads convert x (NORM: times g, and sum x^2) into shared
// memory as fp32, one barrier, and the warps' dot products read x from there (two conflict-free 16-byte shared
// loads per chunk instead of a global load, conversions and, NORM, the g load, product and square). Measured
// against the "warp" kernel in tools/sweep_variants.py (H200 rows in fused_rmsnorm_gemv.cu's crossover note).
// Shared layout (dynamic, K * 4 bytes): elements 8c .. 8c+3 of chunk c at float4 index c, 8c+4 .. 8c+7 at n + c.
// Launch: block = 256 threads, grid = ceil(M / (R * 8)), dynamic shared memory K * 4 bytes.
template <typename TW, typename TX, bool NORM>
__global__ void __launch_bounds__(256, 4) gemv_shared_kernel(GemvArgs a) {
  constexpr int R = rows_per_group(1);
  constexpr int U = 4;
  constexpr int kWarps = 8;
  extern __shared__ float4 staged[];
  __shared__ float warp_sq[kWarps];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const std::int64_t row0 = (static_cast<std::int64_t>(blockIdx.x) * kWarps + warp) * R;
  const int n = static_cast<int>(a.k / kChunkElems);
  const uint4* wrow[R];
  weight_rows(wrow, a.w, row0, a.m, n);
  uint4 wv[R][U];  // the first U chunks: in flight while the block stages x
  load_weight_batch(wv, wrow, lane, kWarpSize, n);

  const TX* x = static_cast<const TX*>(a.x);
  const TX* g = static_cast<const TX*>(a.g);
  float sum_sq = 0.0f;
  for (int c = threadIdx.x; c < n; c += kWarps * kWarpSize) {
    float xf[8];
    load_act8(x, c, xf);
    if constexpr (NORM) {
      float gf[8];
      load_act8(g, c, gf);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        sum_sq = fmaf(xf[j], xf[j], sum_sq);
        xf[j] *= gf[j];
      }
    }
    staged[c] = make_float4(xf[0], xf[1], xf[2], xf[3]);
    staged[n + c] = make_float4(xf[4], xf[5], xf[6], xf[7]);
  }
  if constexpr (NORM) {
    sum_sq = warp_sum(sum_sq);
    if (lane == 0) warp_sq[warp] = sum_sq;
  }
  __syncthreads();
  if (row0 >= a.m) return;  // after the only barrier; uniform per warp
  float scale = 1.0f;
  if constexpr (NORM) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += warp_sq[w];
    scale = inv_rms(total, a.k, a.eps);
  }

  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c0 = lane; c0 < n; c0 += kWarpSize * U) {
    if (c0 != lane) load_weight_batch(wv, wrow, c0, kWarpSize, n);  // later batches (K > 32 * 8 * U)
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * kWarpSize;
      if (c < n) {
        const float4 lo = staged[c];
        const float4 hi = staged[n + c];
        const float xf[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[8];
          unpack8(wv[r][u], TW{}, wf);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[r] = fmaf(wf[j], xf[j], acc[r]);
        }
      }
    }
  }
  TX* y = static_cast<TX*>(a.y);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    acc[r] = warp_sum(acc[r]);
    if (lane == r && row0 + r < a.m) y[row0 + r] = from_f32<TX>(acc[r] * scale);
  }
}

// ------------------------------------------------------------------------------------------ scalar kernel
// Any K, any (element-aligned) address: one warp per row, lanes stride over single elements (coalesced
// 64-byte warp loads of fp16 weights). Batch up to 8 at run time.
template <typename TW, typename TX, bool NORM>
__global__ void __launch_bounds__(256) gemv_scalar_kernel(GemvArgs a) {
  constexpr int MAXB = 8;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
  if (row >= a.m) return;  // uniform per warp
  const TW* w = static_cast<const TW*>(a.w) + row * a.k;
  const TX* x = static_cast<const TX*>(a.x);
  const TX* g = static_cast<const TX*>(a.g);
  const int batch = a.batch;
  float acc[MAXB];
  float sum_sq[MAXB];
#pragma unroll
  for (int b = 0; b < MAXB; ++b) acc[b] = sum_sq[b] = 0.0f;
  for (std::int64_t e = lane; e < a.k; e += kWarpSize) {
    const float wv = to_f32(w[e]);
    const float gv = NORM ? to_f32(g[e]) : 1.0f;
#pragma unroll
    for (int b = 0; b < MAXB; ++b) {
      if (b < batch) {
        float xv = to_f32(x[b * a.k + e]);
        if constexpr (NORM) {
          sum_sq[b] = fmaf(xv, xv, sum_sq[b]);
          xv *= gv;
        }
        acc[b] = fmaf(wv, xv, acc[b]);
      }
    }
  }
  TX* y = static_cast<TX*>(a.y);
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    acc[b] = warp_sum(acc[b]);
    if constexpr (NORM) sum_sq[b] = warp_sum(sum_sq[b]);
    if (lane == b && b < batch) {
      const float scale = NORM ? inv_rms(sum_sq[b], a.k, a.eps) : 1.0f;
      y[b * a.m + row] = from_f32<TX>(acc[b] * scale);
    }
  }
}

// ---------------------------------------------------------------------------------------------- launcher
template <typename TW, typename TX, bool NORM>
void launch_for_act(const GemvArgs& a, GemvVariant variant, dim3 grid, dim3 block, cudaStream_t stream) {
  if (variant == GemvVariant::Shared) {
    gemv_shared_kernel<TW, TX, NORM><<<grid, block, shared_smem_bytes(a.k), stream>>>(a);
    return;
  }
  if (variant == GemvVariant::Scalar) {
    gemv_scalar_kernel<TW, TX, NORM><<<grid, block, 0, stream>>>(a);
    return;
  }
  const bool split = variant == GemvVariant::Block;
  static_assert(max_batch_for(1) == 1 && max_batch_for(4) == 4 && max_batch_for(8) == 8, "dispatch below");
  if (a.batch == 1) {
    if (split) gemv_vector_kernel<TW, TX, 1, NORM, kSplitWarps><<<grid, block, 0, stream>>>(a);
    else gemv_vector_kernel<TW, TX, 1, NORM, 1><<<grid, block, 0, stream>>>(a);
  } else if (a.batch <= 4) {
    if (split) gemv_vector_kernel<TW, TX, 4, NORM, kSplitWarps><<<grid, block, 0, stream>>>(a);
    else gemv_vector_kernel<TW, TX, 4, NORM, 1><<<grid, block, 0, stream>>>(a);
  } else {
    if (split) gemv_vector_kernel<TW, TX, 8, NORM, kSplitWarps><<<grid, block, 0, stream>>>(a);
    else gemv_vector_kernel<TW, TX, 8, NORM, 1><<<grid, block, 0, stream>>>(a);
  }
}

template <typename TW, typename TX>
void launch_for_norm(const GemvArgs& a, bool norm, GemvVariant variant, dim3 grid, dim3 block, cudaStream_t stream) {
  if (norm) launch_for_act<TW, TX, true>(a, variant, grid, block, stream);
  else launch_for_act<TW, TX, false>(a, variant, grid, block, stream);
}

// Enqueues one kernel. variant must be resolved (not Auto); grid/block as described at the top of this file.
template <typename TW>
void launch_gemv_for_weight(const GemvArgs& a, DType x_dtype, bool norm, GemvVariant variant, dim3 grid, dim3 block,
                            cudaStream_t stream) {
  switch (x_dtype) {
    case DType::F16: launch_for_norm<TW, __half>(a, norm, variant, grid, block, stream); break;
    case DType::BF16: launch_for_norm<TW, __nv_bfloat16>(a, norm, variant, grid, block, stream); break;
    case DType::F32: launch_for_norm<TW, float>(a, norm, variant, grid, block, stream); break;
  }
  EDGELLM_CUDA_CHECK_LAUNCH("gemv");
}

}  // namespace edgellm::cuda::gemv_detail
