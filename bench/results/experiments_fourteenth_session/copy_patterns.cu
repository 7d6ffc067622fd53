// Copy-pattern micro-benchmark (fourteenth session; not part of the package). Question: which way of streaming
// a decode KV cache into shared memory reaches the H200's read bandwidth? fa2_decode's tensor-core kernel
// (src/cuda/fa2_decode_kernel.cuh) reads K/V with per-warp cp.async (LDGSTS) rings and trails cuDNN's SDPA
// kernel by ~8% at 65536 keys; ncu saw every sector requested from L2 twice (experiments_eleventh_session).
// Each kernel here only reads K and V ([Hkv][S][D] fp16, D = 128: Llama-3.1-8B's 8 x 65536 x 128, 268 MB) with
// one pattern and XORs what it read into a per-thread word (so nothing is dead code); no attention math.
//   ring_ldgsts  : fa2_decode_mma_kernel's copy: 4 warps, per-warp ring of S tiles (16 keys of K and V, 8 KB),
//                  cp.async.cg 16 B per lane, 512 contiguous bytes per instruction; grid (splits, Hkv)
//   ring_bulk    : the same ring, each tile two cp.async.bulk copies (4 KB of K, 4 KB of V) issued by lane 0,
//                  completing on a per-slot mbarrier (transaction bytes)
//   block_bulk   : per-block ring of S tiles of 64 keys (16 KB K + 16 KB V), thread 0 issues two bulk copies,
//                  every warp reads the slot, a block barrier frees it
//   ldg_regs     : each lane loads its share of the warp's 16-key tile into registers (LDG.128), two tiles in
//                  flight
//   stream       : grid-stride LDG.128 over both arrays, 4 loads in flight per thread, 8 blocks of 256 per SM
// Timing: CUDA events around each launch, a 512 MB buffer written between launches (L2 flush), medians of 30.
// COPY_RANDOM=1: K/V hold hashed fp16 values instead of a constant byte.
// Build: nvcc -arch=sm_90 -O3 -std=c++17 copy_patterns.cu -o copy_patterns; run: ./copy_patterns [mode splits]
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(x)                                                                                  \
  do {                                                                                            \
    cudaError_t e = (x);                                                                          \
    if (e != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e));      \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

constexpr int D = 128;
constexpr int kRowBytes = D * 2;
constexpr int kWarps = 4;
constexpr int kRingBytes = 96 * 1024;

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

__device__ __forceinline__ uint32_t fold(const uint4& x) { return x.x ^ x.y ^ x.z ^ x.w; }

struct Work {
  const char* k;  // this block's kv head, key_begin
  const char* v;
  int keys;       // keys of this block's chunk
};
__device__ __forceinline__ Work block_work(const __half* k, const __half* v, int seq, int chunk) {
  const int key_begin = blockIdx.x * chunk;
  const int keys = max(0, min(seq, key_begin + chunk) - key_begin);
  const size_t off = (static_cast<size_t>(blockIdx.y) * seq + key_begin) * D;
  return {reinterpret_cast<const char*>(k + off), reinterpret_cast<const char*>(v + off), keys};
}

// Reads this lane's 16-byte chunks of a slot of `rows` rows of K and V (swizzle-free: only bytes matter here).
__device__ __forceinline__ uint32_t consume(const unsigned char* slot, int bytes, int lane, int stride) {
  uint32_t acc = 0;
  for (int o = lane * 16; o < bytes; o += stride) acc ^= fold(*reinterpret_cast<const uint4*>(slot + o));
  return acc;
}

template <int S>
__global__ void __launch_bounds__(kWarps * 32) ring_ldgsts(const __half* k, const __half* v, int seq, int chunk,
                                                           uint32_t* sink) {
  constexpr int kTileKeys = 16, kTileBytes = 2 * kTileKeys * kRowBytes;
  const Work w = block_work(k, v, seq, chunk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* ring = smem + warp * S * kTileBytes;
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  const int tiles = w.keys / kTileKeys;  // whole tiles only (chunks are multiples of 64 keys)
  auto issue = [&](int i, int slot) {
    const int tile = i * kWarps + warp;
    if (tile < tiles) {
      const size_t off = static_cast<size_t>(tile) * kTileKeys * kRowBytes + lane * 16;
      const uint32_t dst = ring_addr + slot * kTileBytes + lane * 16;
#pragma unroll
      for (int c = 0; c < kTileKeys * kRowBytes / 512; ++c) {
        cp_async_16(dst + c * 512, w.k + off + c * 512);
        cp_async_16(dst + kTileKeys * kRowBytes + c * 512, w.v + off + c * 512);
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i, i);
  uint32_t acc = 0;
  int slot = 0;
  for (int i = 0; i * kWarps + warp < tiles; ++i) {
    cp_async_wait<S - 2>();
    __syncwarp();
    issue(i + S - 1, slot == 0 ? S - 1 : slot - 1);
    acc ^= consume(ring + slot * kTileBytes, kTileBytes, lane, 512);
    slot = slot == S - 1 ? 0 : slot + 1;
  }
  cp_async_wait<0>();
  sink[blockIdx.y * gridDim.x * blockDim.x + blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

template <int S>
__global__ void __launch_bounds__(kWarps * 32) ring_bulk(const __half* k, const __half* v, int seq, int chunk,
                                                         uint32_t* sink) {
  constexpr int kTileKeys = 16, kHalf = kTileKeys * kRowBytes, kTileBytes = 2 * kHalf;
  const Work w = block_work(k, v, seq, chunk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) uint64_t bars[kWarps][S];
  unsigned char* ring = smem + warp * S * kTileBytes;
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(&bars[warp][0]));
  if (lane == 0) {
    for (int s = 0; s < S; ++s) mbar_init(bar0 + 8 * s, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncwarp();
  const int tiles = w.keys / kTileKeys;
  auto issue = [&](int i, int slot) {
    const int tile = i * kWarps + warp;
    if (lane == 0 && tile < tiles) {
      const size_t off = static_cast<size_t>(tile) * kHalf;
      mbar_expect_tx(bar0 + 8 * slot, kTileBytes);
      bulk_copy(ring_addr + slot * kTileBytes, w.k + off, kHalf, bar0 + 8 * slot);
      bulk_copy(ring_addr + slot * kTileBytes + kHalf, w.v + off, kHalf, bar0 + 8 * slot);
    }
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i, i);
  uint32_t acc = 0;
  int slot = 0;
  uint32_t phase = 0;  // bit s: parity of slot s's next completion
  for (int i = 0; i * kWarps + warp < tiles; ++i) {
    mbar_wait(bar0 + 8 * slot, (phase >> slot) & 1);
    phase ^= 1u << slot;
    __syncwarp();  // every lane is done reading the slot refilled next
    issue(i + S - 1, slot == 0 ? S - 1 : slot - 1);
    acc ^= consume(ring + slot * kTileBytes, kTileBytes, lane, 512);
    slot = slot == S - 1 ? 0 : slot + 1;
  }
  // Copies issued past the end: none (issue() checks tile < tiles), so nothing is left in flight.
  sink[blockIdx.y * gridDim.x * blockDim.x + blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

template <int S>
__global__ void __launch_bounds__(kWarps * 32) block_bulk(const __half* k, const __half* v, int seq, int chunk,
                                                          uint32_t* sink) {
  constexpr int kTileKeys = 64, kHalf = kTileKeys * kRowBytes, kTileBytes = 2 * kHalf;
  const Work w = block_work(k, v, seq, chunk);
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) uint64_t bars[S];
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(&bars[0]));
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) mbar_init(bar0 + 8 * s, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const int tiles = w.keys / kTileKeys;
  auto issue = [&](int i, int slot) {
    if (threadIdx.x == 0 && i < tiles) {
      const size_t off = static_cast<size_t>(i) * kHalf;
      mbar_expect_tx(bar0 + 8 * slot, kTileBytes);
      bulk_copy(ring_addr + slot * kTileBytes, w.k + off, kHalf, bar0 + 8 * slot);
      bulk_copy(ring_addr + slot * kTileBytes + kHalf, w.v + off, kHalf, bar0 + 8 * slot);
    }
  };
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue(i, i);
  uint32_t acc = 0;
  int slot = 0;
  uint32_t phase = 0;
  for (int i = 0; i < tiles; ++i) {
    mbar_wait(bar0 + 8 * slot, (phase >> slot) & 1);
    phase ^= 1u << slot;
    acc ^= consume(smem + slot * kTileBytes, kTileBytes, threadIdx.x, kWarps * 32 * 16);
    __syncthreads();  // the slot refilled next (read in iteration i - 1... and i) is free
    issue(i + S - 1, slot == 0 ? S - 1 : slot - 1);
    slot = slot == S - 1 ? 0 : slot + 1;
  }
  sink[blockIdx.y * gridDim.x * blockDim.x + blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

__global__ void __launch_bounds__(kWarps * 32) ldg_regs(const __half* k, const __half* v, int seq, int chunk,
                                                        uint32_t* sink) {
  constexpr int kTileKeys = 16, kHalf = kTileKeys * kRowBytes, kPer = kHalf / 512;  // 8 uint4 of K per lane
  const Work w = block_work(k, v, seq, chunk);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tiles = w.keys / kTileKeys;
  uint4 a[2][2 * kPer];
  auto load = [&](int i, uint4 (&r)[2 * kPer]) {
    const int tile = i * kWarps + warp;
    if (tile < tiles) {
      const size_t off = static_cast<size_t>(tile) * kHalf + lane * 16;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        r[c] = __ldcs(reinterpret_cast<const uint4*>(w.k + off + c * 512));
        r[kPer + c] = __ldcs(reinterpret_cast<const uint4*>(w.v + off + c * 512));
      }
    } else {
#pragma unroll
      for (int c = 0; c < 2 * kPer; ++c) r[c] = make_uint4(0, 0, 0, 0);
    }
  };
  uint32_t acc = 0;
  load(0, a[0]);
  int i = 0;
  for (; i * kWarps + warp < tiles; i += 2) {
    load(i + 1, a[1]);
#pragma unroll
    for (int c = 0; c < 2 * kPer; ++c) acc ^= fold(a[0][c]);
    load(i + 2, a[0]);
#pragma unroll
    for (int c = 0; c < 2 * kPer; ++c) acc ^= fold(a[1][c]);
  }
  sink[blockIdx.y * gridDim.x * blockDim.x + blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

__global__ void __launch_bounds__(256) stream(const uint4* a, const uint4* b, size_t n_vec, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n_vec; i += 4 * stride) {
    const uint4 x0 = __ldcs(a + i), x1 = __ldcs(a + i + stride), x2 = __ldcs(b + i), x3 = __ldcs(b + i + stride);
    const uint4 x4 = __ldcs(a + i + 2 * stride), x5 = __ldcs(a + i + 3 * stride), x6 = __ldcs(b + i + 2 * stride),
                x7 = __ldcs(b + i + 3 * stride);
    acc ^= fold(x0) ^ fold(x1) ^ fold(x2) ^ fold(x3) ^ fold(x4) ^ fold(x5) ^ fold(x6) ^ fold(x7);
  }
  for (; i < n_vec; i += stride) acc ^= fold(__ldcs(a + i)) ^ fold(__ldcs(b + i));
  sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

// Fills n 16-bit words with a hash of their index (COPY_RANDOM=1: the data of a real cache, not a constant).
__global__ void fill_hash(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = static_cast<uint16_t>(0x3000 | (h & 0x0fff) | ((h >> 16) & 0x8000));  // fp16 in +-[2^-3, 2^-2)
  }
}

int main(int argc, char** argv) {
  const int kv_heads = 8, seq = 65536;
  const size_t bytes_each = static_cast<size_t>(kv_heads) * seq * D * 2;
  const char* only_mode = argc > 1 ? argv[1] : nullptr;
  const int only_splits = argc > 2 ? std::atoi(argv[2]) : 0;
  const int iters = argc > 3 ? std::atoi(argv[3]) : 30;
  __half *k, *v;
  uint32_t* sink;
  char* flush;
  const size_t flush_bytes = 512u << 20;
  CHECK(cudaMalloc(&k, bytes_each));
  CHECK(cudaMalloc(&v, bytes_each));
  CHECK(cudaMalloc(&sink, 64u << 20));
  CHECK(cudaMalloc(&flush, flush_bytes));
  CHECK(cudaMemset(k, 0x3c, bytes_each));
  CHECK(cudaMemset(v, 0x3b, bytes_each));
  if (std::getenv("COPY_RANDOM")) {
    fill_hash<<<1024, 256>>>(reinterpret_cast<uint16_t*>(k), bytes_each / 2, 1u);
    fill_hash<<<1024, 256>>>(reinterpret_cast<uint16_t*>(v), bytes_each / 2, 2u);
    CHECK(cudaDeviceSynchronize());
  }
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));

  struct Case {
    const char* name;
    void (*kernel)(const __half*, const __half*, int, int, uint32_t*);
    int smem;
  };
  std::vector<Case> cases = {
      {"ring_ldgsts_s3", ring_ldgsts<3>, kRingBytes},   {"ring_ldgsts_s6", ring_ldgsts<6>, 2 * kRingBytes},
      {"ring_bulk_s3", ring_bulk<3>, kRingBytes},       {"ring_bulk_s6", ring_bulk<6>, 2 * kRingBytes},
      {"block_bulk_s3", block_bulk<3>, kRingBytes},     {"block_bulk_s6", block_bulk<6>, 2 * kRingBytes},
      {"ldg_regs", ldg_regs, 0},
  };
  std::printf("{\"device_sms\": %d, \"bytes\": %zu, \"results\": [\n", sms, 2 * bytes_each);
  bool first = true;
  auto time_it = [&](const char* name, int splits, auto launch) {
    std::vector<float> ms;
    for (int it = 0; it < iters + 3; ++it) {
      CHECK(cudaMemsetAsync(flush, it & 0xff, flush_bytes));
      CHECK(cudaEventRecord(e0));
      launch();
      CHECK(cudaGetLastError());
      CHECK(cudaEventRecord(e1));
      CHECK(cudaEventSynchronize(e1));
      float t = 0;
      CHECK(cudaEventElapsedTime(&t, e0, e1));
      if (it >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double us = 1e3 * ms[ms.size() / 2];
    std::printf("%s{\"mode\": \"%s\", \"splits\": %d, \"median_us\": %.2f, \"min_us\": %.2f, \"GBps\": %.0f}\n",
                first ? "" : ",", name, splits, us, 1e3 * ms.front(), 2 * bytes_each / us / 1e3);
    first = false;
  };
  for (const Case& c : cases) {
    if (only_mode && std::strcmp(only_mode, c.name) != 0) continue;
    if (c.smem > 48 * 1024) CHECK(cudaFuncSetAttribute(c.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem));
    for (int splits : {16, 33, 64}) {
      if (only_splits && splits != only_splits) continue;
      const int chunk = ((seq + splits - 1) / splits + 63) / 64 * 64;
      const int grid_x = (seq + chunk - 1) / chunk;
      time_it(c.name, splits, [&] {
        c.kernel<<<dim3(grid_x, kv_heads), kWarps * 32, c.smem>>>(k, v, seq, chunk, sink);
      });
    }
  }
  if (!only_mode || std::strcmp(only_mode, "stream") == 0) {
    time_it("stream", 8 * sms, [&] {
      stream<<<8 * sms, 256>>>(reinterpret_cast<const uint4*>(k), reinterpret_cast<const uint4*>(v), bytes_each / 16,
                               sink);
    });
  }
  std::printf("]}\n");
  return 0;
}
