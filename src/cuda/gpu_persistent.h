// The GPU engine's persistent step: one decode step (gpu_engine.h's math, unchanged) in ONE kernel launch.
//
// Why: SmolLM2-135M's step is 153 small kernels (5 per layer); each GEMV moves 0.1-0.6 MB, so the step's time is
// the latency of kernel boundaries, not bandwidth (docs/engine.md). Here one cooperative grid of one block per SM
// runs every stage in turn and a grid-wide barrier (an atomic counter in global memory) replaces each kernel
// boundary; before arriving at a barrier, every block already loads its first weights of the next stage (weights
// are never written), so their memory latency overlaps the wait.
//
// Stages of one step (each ends with a grid barrier):
//   embed      x = dequant(tok_embd[token])
//   per layer  qkv    : rmsnorm + QKV GEMV (+bias) + RoPE + fp16 q and KV-cache append        (gemv_q8.cuh)
//              attn   : split-KV attention over the fp16 cache: units (kv head, chunk of keys), the
//                       last unit of a kv head to finish merges the chunks (atomic counter)  -> o (f32)
//              o-proj : x += Wo o;   ffn-up: act = silu(Wg n) * (Wu n), n = rmsnorm(x);   down: x += Wd act
//   head       logits = Wout rmsnorm(x); each block's argmax goes into one 64-bit atomicMax
//   finish     block 0: token = argmax, position += 1 (device state, as the graph path leaves it)
// = 5 L + 2 barriers. Launch: cooperative, gridDim = SMs (the caller checks one block fits per SM), 512 threads,
// dynamic shared memory persistent_smem_bytes(). The barrier counter, the attention counters and the argmax slot
// ("sync") must be zero at launch: the step's graph clears them with a memset node.
//
// Limits (beyond the engine's): n_head / n_head_kv <= 8.
//
// Measured (H200, random SmolLM2-shaped model, tools/engine_probe.py --step-mode persistent --trace): correct, but
// about half as fast as the graph of kernels (954 vs 1846 tok/s). The barriers are cheap (block 0 waits ~1.2 us
// per barrier, the slowest block's lag included); each stage's own work is not: ~3.5-5.4 us per GEMV stage and
// ~9.5 us for the attention at short contexts (3 units of work: one per kv head), a chain of dependent
// instructions at ~20 cycles each (ncu: 4 warps per scheduler, half the stalls at block barriers; 512 threads
// leave 128 registers per thread, and ptxas spills 184-248 bytes per kernel variant). In the graph,
// programmatic launch already hides most of the launch cost that this design removes. docs/engine.md has the rest.
#pragma once

#include <cstddef>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gemv_q8.cuh"
#include "gpu_engine.h"

namespace edgellm::cuda {

constexpr int kPersistentThreads = 512;
constexpr int kPersistentMaxGqa = 8;  // q heads per kv head

constexpr int kPersistentWarps = kPersistentThreads / 32;

struct PersistentStep {
  const gemv_q8::GemvParams* gemv = nullptr;  // device array: [4 per layer: qkv, o-proj, gate/up, down], LM head
                                              // (ksplit for kPersistentWarps)
  DeviceMatrix tok_embd;
  int n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, max_seq = 0;
  float attn_scale = 0.0f;
  __half* k_cache = nullptr;  // [L][G][max_seq][D]
  __half* v_cache = nullptr;
  float* x = nullptr;         // [E] residual
  __half* q = nullptr;        // [H * D]
  float* o = nullptr;         // [H * D] attention output
  int* state = nullptr;       // {token, position, seq_len, argmax}
  float* attn_partial = nullptr;  // [G][max_chunks][H/G][D/2 + 1] float2: unnormalized sums, then (max, sum)
  int attn_max_chunks = 0;
  unsigned* sync = nullptr;   // zero at launch: [0] barrier counter, [1 + g] attention counters (G of them)
  unsigned long long* argmax = nullptr;  // zero at launch: (orderable logit << 32) | (~index)
  // Optional (null: off): block 0's global timer (ns) at the start, then at arrival and departure of each of the
  // 5 L + 2 barriers (the engine's stage trace, for tuning).
  unsigned long long* trace = nullptr;
};

// Chunks per kv head the attention may use on a grid of n_blocks (sizes the attn_partial buffer).
int persistent_attn_max_chunks(int n_head_kv, int max_seq, int n_blocks);
std::size_t persistent_smem_bytes(const cpu::EngineConfig& c, int n_blocks);
// Whether a block of the persistent kernel fits on one SM (registers, shared memory); sets the kernels'
// shared-memory opt-in. Throws std::runtime_error on CUDA errors.
bool persistent_fits(const cpu::EngineConfig& c, int n_blocks);
// Enqueues the step's kernel (cooperative launch, gridDim n_blocks). layer_type / head_type: the ggml type shared
// by every layer matrix / of the output matrix (0 when mixed), which picks a specialised kernel.
void launch_persistent_step(const PersistentStep& p, int layer_type, int head_type, int n_blocks, std::size_t smem,
                            cudaStream_t stream);

}  // namespace edgellm::cuda
