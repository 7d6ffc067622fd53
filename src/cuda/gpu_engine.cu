// GPU decode engine (gpu_engine.h): the GEMV kernel over gemv_q8.cuh's device code, embedding, argmax and the host
// side (weight upload, graph capture per length bucket, the step, batched prefill; the persistent step's kernel
// is in gpu_persistent.cu).
#include "gpu_engine.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "gemv_q8.cuh"
#include "gpu_persistent.h"

namespace edgellm::cuda {
namespace {

using namespace gemv_q8;

constexpr int kGemvWarps = 8;     // warps per GEMV block; 1, 2, 4 or 8 of them (a group) own one row pair
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kBlocksPerSm = 4;   // GEMV grid cap per SM (and at most what fits: launch_gemv); row pairs beyond
                                   // it are looped over (the LM head)
constexpr int kEmbedThreads = 256;
constexpr int kPrefillTokens = 8;  // prompt tokens per batched prefill step (each GEMV weight load serves all 8)
// Decode attention runs the SIMT fa2 kernel for buckets up to this many keys, whatever fa2_default_variant (measured
// on isolated launches with the L2 flushed) picks: see attention_ops.
constexpr int kDecodeSimtMaxKeys = 6144;
constexpr int kStepSlotInts = 4;   // a step in flight's pinned slot: {token, position} in, token out, padding

// ------------------------------------------------------------------------------------------------ GEMV kernel
// The LM head's argmax (StoreArgmax), thread 0 of each block with its block's key: adds it to p.argmax[0]; the last
// block to arrive (p.argmax[1] counts them) takes the grid's key, leaves both slots zero for the next step and
// writes the token (the first index of the largest logit; NaN never wins; 0 if every logit is NaN): state
// {token, position + 1, -, token} and, with a ring, the host's pinned slot of this position (mapped memory: the
// host reads it after the step's event; no copy node). The fences order every block's atomicMax before its
// arrival, and all arrivals before the last block's read. Replaced a separate one-block argmax kernel and a 4-byte
// copy: +4.2% / +3.2% decode tok/s at depths 0 / 4096 on SmolLM2-135M (H200, one model per process;
// bench/results/experiments_twenty_third_session/, call 6).
__device__ void finish_argmax(const GemvParams& p, unsigned long long key) {
  if (key != 0ull) atomicMax(p.argmax, key);
  __threadfence();
  unsigned* const arrived = reinterpret_cast<unsigned*>(p.argmax + 1);
  if (atomicAdd(arrived, 1u) + 1 != gridDim.x) return;
  __threadfence();
  const int token = argmax_key_index(atomicExch(p.argmax, 0ull));
  *arrived = 0u;
  const int position = p.step_state[1];
  p.step_state[0] = token;
  p.step_state[3] = token;
  p.step_state[1] = position + 1;
  if (p.token_ring) {
    volatile int* slot = p.token_ring + static_cast<std::size_t>(position % p.ring_slots) * p.ring_stride;
    *slot = token;
  }
}

// One GEMV of gemv_q8.cuh per launch (prologue, dot products and epilogue as documented there).
// Launch: grid min(ceil(n_pairs / groups), min(4, resident blocks per SM) * SMs), kGemvThreads threads, dynamic
// shared memory gemv_smem_bytes(K, kGemvWarps) (opt-in above 48 KiB; the LM head with streamed rounds: its rings
// after it, head_ring_offset + head_ring_bytes). With programmatic launch the first weights
// are loaded before waiting for the previous kernel (weights are never written), so their latency overlaps its
// tail.
// NT: tokens per launch (1: a decode step; kPrefillTokens: a batched prefill step). FA: f32 activations for
// quantized weights (the engine's activations option; fp16 weights always use them).
// p.trace (GpuEngine::enable_stage_trace; null otherwise): [0] the first block's start, [1] the first block past
// the wait, [2] ~(the last block past the wait), [3] ~(the last block's end), in global-timer ns: atomicMin on
// slots preset to all ones (~t turns the latest time into a minimum).
template <Prologue P, Epilogue E, int TYPE, int NT, bool FA>
__global__ void __launch_bounds__(kGemvThreads) gemv_q8_kernel(GemvParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr bool kFloatAct = FA || float_activations(TYPE);
  GemvSmem s = gemv_smem(smem, p.k, kGemvWarps, NT, kFloatAct);
  unsigned long long* const trace = threadIdx.x == 0 ? p.trace : nullptr;
  if (trace) atomicMin(trace, globaltimer_ns());
  // At the top, before the prefetch: triggering after the wait instead (all GEMVs, the QKV one alone, or all
  // but it) was slower at depth 0 or 4000 or both (docs/engine.md, experiments_eighteenth_session).
  pdl_trigger();
  GemvCursor c;
  gemv_prefetch<E, TYPE, kGemvWarps>(p, blockIdx.x, c);
  if constexpr (E == Epilogue::StoreArgmax && NT == 1) {
    if (p.head_streams) {
      s.head_ring = smem + head_ring_offset(p.k, kGemvWarps, kFloatAct);
      head_prefetch<kGemvWarps>(p, blockIdx.x, gridDim.x, s.head_ring);
    }
  }
  pdl_wait();  // from here on, the previous kernels' outputs (x, o, act, the cache, state) are visible
  if (trace) {
    const unsigned long long t = globaltimer_ns();
    atomicMin(trace + 1, t);
    atomicMin(trace + 2, ~t);
  }
  if constexpr (E == Epilogue::StoreArgmax && NT == 1) {
    ArgmaxAcc best;
    gemv_compute<P, E, TYPE, kGemvWarps, false, NT, FA>(p, blockIdx.x, gridDim.x, c, s, &best);
    const unsigned long long key = block_argmax_key<kGemvWarps>(best);
    if (threadIdx.x == 0) finish_argmax(p, key);
  } else {
    gemv_compute<P, E, TYPE, kGemvWarps, false, NT, FA>(p, blockIdx.x, gridDim.x, c, s, nullptr);
  }
  if (p.trace) {
    __syncthreads();
    if (trace) atomicMin(trace + 3, ~globaltimer_ns());
  }
}

// ---------------------------------------------------------------------------------------------- embedding
// Token t (block t): x[t] = row tokens[t] of the embedding, dequantized; lens[t] = state[1] + 1 + t (the
// attention's length for that token). A decode step: tokens = state, lens = state + 2, 1 block.
// Launch: one block of kEmbedThreads per token. An id outside [0, n_vocab) (the host validates ids; this is
// memory safety only) reads row 0.
__global__ void embed_kernel(Segment embd, int n_embd, const int* tokens, const int* state, int* lens, float* x) {
  pdl_trigger();  // the first layer's GEMV may start prefetching its weights
  const int t = blockIdx.x;
  int token = tokens[t];
  if (token < 0 || token >= embd.rows) token = 0;
  const std::uint8_t* row = embd.w + static_cast<std::size_t>(token) * embd.row_bytes;
  float* xt = x + static_cast<std::size_t>(t) * n_embd;
  for (int i = threadIdx.x; i < n_embd; i += blockDim.x) xt[i] = dequant(row, embd.type, i);
  if (threadIdx.x == 0) lens[t] = state[1] + 1 + t;
}


// The GEMV kernel for quantized weights of ggml type `type` (0: mixed types), with f32 (FA) or Q8_1 activations.
template <Prologue P, Epilogue E, int NT, bool FA>
void (*quantized_gemv_kernel(int type))(GemvParams) {
  switch (type) {
    case kTypeQ4_0: return gemv_q8_kernel<P, E, kTypeQ4_0, NT, FA>;
    case kTypeQ4_1: return gemv_q8_kernel<P, E, kTypeQ4_1, NT, FA>;
    case kTypeQ8_0: return gemv_q8_kernel<P, E, kTypeQ8_0, NT, FA>;
    default: return gemv_q8_kernel<P, E, 0, NT, FA>;
  }
}

// The GEMV kernel the engine launches for weights of `type` (kTypeF16: fp16 weights, which take f32 activations).
template <Prologue P, Epilogue E, int NT>
void (*gemv_kernel(int type, bool float_act))(GemvParams) {
  if (type == kTypeF16) return gemv_q8_kernel<P, E, kTypeF16, NT, false>;
  return float_act ? quantized_gemv_kernel<P, E, NT, true>(type) : quantized_gemv_kernel<P, E, NT, false>(type);
}

// Above 48 KiB of dynamic shared memory a kernel must opt in: every quantized kernel of the engine's activation
// form, and with_f16 the fp16-weight kernel (f32 activations can need more than fits: set only where launched).
// head_ring: the LM head's rings at most (kHeadRingMaxBytes; 0 for the other GEMVs).
template <Prologue P, Epilogue E, int NT = 1>
void allow_gemv_smem(int k, bool with_f16, bool float_act, std::size_t head_ring = 0) {
  auto allow = [&](int type) {
    const bool fa = float_act || float_activations(type);
    const int bytes = static_cast<int>(head_ring > 0 ? head_ring_offset(k, kGemvWarps, fa) + head_ring
                                                     : gemv_smem_bytes(k, kGemvWarps, NT, fa));
    EDGELLM_CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<P, E, NT>(type, float_act),
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  };
  for (int type : {0, kTypeQ4_0, kTypeQ4_1, kTypeQ8_0}) allow(type);
  if (with_f16) allow(kTypeF16);
}

// The fp16 copy of a matrix the engine runs with fp16 weights: src (staged on the device in the loader's format:
// f32 rows, or ggml Q4_0/Q4_1/Q8_0 blocks) -> dst rows * cols binary16, each value dequantized as ggml does and
// rounded to nearest; *bad counts values that are not finite in fp16 (beyond +-65504, or inf/NaN already).
// Launch: any grid of 256-thread blocks (grid-stride loop).
__global__ void to_f16_kernel(const std::uint8_t* src, int type, int rows, int cols, int src_row_bytes, __half* dst,
                              int* bad) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = i / cols;
    const int c = static_cast<int>(i % cols);
    const float v = type == 0 ? reinterpret_cast<const float*>(src)[i] : dequant(src + r * src_row_bytes, type, c);
    const __half h = __float2half_rn(v);
    if (!isfinite(__half2float(h))) atomicAdd(bad, 1);
    dst[i] = h;
  }
}

// The LM head's warps per row pair. The head loops over many rounds of row pairs (SmolLM2-135M: 24576 pairs, ~15
// rounds per group), so throughput beats one pair's latency: with K <= kHeadOneWarpMaxK one warp takes a whole pair
// (at most two batches of items per lane, no K-split reduction, twice the groups); beyond, the default split.
// Measured at K = 576 only (experiments_twentieth_session, call 16, random model with SmolLM2-135M's shapes,
// vocabulary and types, H200): head GEMV 30.0 -> 22.6 us, decode +1.5% at depths 0 and 1000; 4 warps per pair:
// 41.0 us. K 577-1024 (e.g. Qwen2.5-0.5B's 896) takes the same rule unmeasured.
constexpr int kHeadOneWarpMaxK = 2 * kBatch * 32 * 8;  // 1024 weights: two batches of 8-weight items per lane
int head_ksplit(int k) { return k <= kHeadOneWarpMaxK ? 1 : gemv_ksplit(k, kGemvWarps); }

// Whether the LM head streams its rounds (gemv_q8.cuh, head_rounds, kHeadStages stages per warp ring): one warp
// per pair, rows a multiple of 4 bytes, the matrix 16-byte aligned, the block's rings within kHeadRingMaxBytes;
// else the register loop. Random model with SmolLM2-135M's shapes, vocabulary and types, H200
// (bench/results/experiments_twenty_first_session/, call 2): head GEMV 27.1 us with the register loop, 20.0 / 19.8 /
// 19.7 / 19.4 us with 2 / 3 / 4 / 6 stages; decode at depths 0 / 1000 2090 / 1811 tok/s with the register loop,
// 2117 / 1834 with 4 stages (+1.3%).
constexpr std::size_t kHeadRingMaxBytes = 64 * 1024;
bool head_streams(const Segment& out, int ksplit) {
  return ksplit == 1 && out.row_bytes % 4 == 0 && reinterpret_cast<std::uintptr_t>(out.w) % 16 == 0 &&
         head_ring_bytes(out.row_bytes, kGemvWarps) <= kHeadRingMaxBytes;
}

// float_act: the quantized kernels with f32 activations (fp16 weights take them anyway). ksplit: warps per row
// pair (0: gemv_ksplit's, the latency choice).
template <Prologue P, Epilogue E, int NT = 1>
void launch_gemv(GemvParams p, int n_segments, int multiprocessors, bool programmatic, bool float_act,
                 cudaStream_t stream, int ksplit = 0) {
  p.ksplit = ksplit > 0 ? ksplit : gemv_ksplit(p.k, kGemvWarps);
  const int groups = kGemvWarps / p.ksplit;
  int type = p.seg[0].type;
  for (int i = 1; i < n_segments; ++i) {
    if (p.seg[i].type != type) type = 0;
  }
  const auto kernel = gemv_kernel<P, E, NT>(type, float_act);
  const bool fa = float_act || float_activations(type);
  const std::size_t smem = p.head_streams ? head_ring_offset(p.k, kGemvWarps, fa) +
                                               head_ring_bytes(p.seg[0].row_bytes, kGemvWarps)
                                         : gemv_smem_bytes(p.k, kGemvWarps, NT, fa);
  // The grid fits the GPU in one wave: a block of a second wave would start only as a first-wave block ends, and
  // build the activation again (the SmolLM2 LM head's Q8_0 kernel, 80 registers, holds 3 blocks per SM: its 4 x SMs
  // blocks took 45.0 us, the resident 3 x SMs 31.7; experiments_twentieth_session, call 13).
  int resident_per_sm = 0;
  EDGELLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident_per_sm, kernel, kGemvThreads, smem));
  const int blocks_per_sm = std::max(1, std::min(kBlocksPerSm, resident_per_sm));
  const int blocks = std::min((p.n_pairs + groups - 1) / groups, blocks_per_sm * multiprocessors);
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg = launch_config(dim3(blocks), dim3(kGemvThreads), smem, stream, programmatic, attr);
  EDGELLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p));
}

Segment segment(const DeviceMatrix& m) { return Segment{m.data, m.type, m.rows, m.row_bytes}; }

}  // namespace

// ------------------------------------------------------------------------------------------------ host side
struct StepGemvs {
  GemvParams p[4];  // qkv, o-proj, gate/up, down
};

// One captured CUDA graph.
struct GpuEngine::Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::size_t nodes = 0;
  ~Graph() { reset(); }
  void reset() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    exec = nullptr;
    graph = nullptr;
    nodes = 0;
  }
};

// The graph-mode step and the batched prefill step for lengths up to length_hint, each captured on first use.
struct GpuEngine::Bucket {
  int length_hint = 0;  // the graphs are used while the longest attention length <= length_hint
  std::vector<std::unique_ptr<Fa2DecodeOp>> attention;          // decode: one per layer (its own split workspace)
  std::vector<std::unique_ptr<Fa2DecodeOp>> prefill_attention;  // kPrefillTokens queries, one cache
  int decode_merge_kernels = 0;  // split-merge kernels the decode attention ops launch (kernels_per_step)
  Graph decode, prefill;
};

namespace {

std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

// host_type: the loader's type (F32 = 0, or a quantized ggml type).
int host_type(const cpu::WeightView& w) { return static_cast<int>(w.type); }
std::size_t host_row_bytes(const cpu::WeightView& w) {
  return host_type(w) == 0 ? w.cols * sizeof(float) : w.cols / kQK * block_bytes(host_type(w));
}

void check_matrix(const cpu::WeightView& w, const std::string& name, std::size_t rows, std::size_t cols) {
  const int type = host_type(w);
  if (type != 0 && type != kTypeQ4_0 && type != kTypeQ4_1 && type != kTypeQ8_0) {
    throw std::invalid_argument("GpuEngine: tensor '" + name + "' has ggml type " + std::to_string(type) +
                                "; the GPU engine runs F32 (as fp16), Q4_0, Q4_1 and Q8_0 matrices");
  }
  if (w.data == nullptr || w.rows != rows || w.cols != cols || cols % kQK != 0) {
    throw std::invalid_argument("GpuEngine: tensor '" + name + "' has shape [" + std::to_string(w.rows) + ", " +
                                std::to_string(w.cols) + "], expected [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "] with cols a multiple of 32");
  }
}

}  // namespace

GpuEngine::GpuEngine(const cpu::ModelView& m, bool programmatic_launch, GpuStepMode mode, bool float_activations)
    : config_(m.config), float_activations_(float_activations) {
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
  // Which matrices run with fp16 weights: every one the loader hands over as f32 (the file's F16, BF16, F32 and
  // other types without a quantized GEMV here), and with it every matrix read by the same GEMV (q/k/v, gate/up),
  // so that each GEMV multiplies one activation form (Q8_1 for quantized weights, f32 for fp16 ones).
  std::vector<const void*> f16_data;  // the host data of every matrix stored as fp16
  auto mark_group = [&](std::initializer_list<const cpu::WeightView*> group) {
    bool any_f32 = false;
    for (const cpu::WeightView* w : group) any_f32 = any_f32 || (w->data != nullptr && host_type(*w) == 0);
    if (any_f32) {
      for (const cpu::WeightView* w : group) f16_data.push_back(w->data);
    }
  };
  mark_group({&m.tok_embd});
  mark_group({&m.output});
  for (const cpu::LayerView& L : m.layers) {
    mark_group({&L.wq, &L.wk, &L.wv});
    mark_group({&L.wo});
    mark_group({&L.gate, &L.up});
    mark_group({&L.down});
  }
  auto runs_f16 = [&](const cpu::WeightView& w) {
    return std::find(f16_data.begin(), f16_data.end(), w.data) != f16_data.end();
  };
  fp16_matrices_ = 0;
  for (const cpu::LayerView& L : m.layers) {
    for (const cpu::WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) fp16_matrices_ += runs_f16(*w);
  }
  fp16_matrices_ += runs_f16(m.tok_embd) + (m.output.data != m.tok_embd.data && runs_f16(m.output));
  // Shared memory opt-in per GEMV kernel (the fp16-weight variants only where the model has fp16 matrices).
  const bool f16 = fp16_matrices_ > 0, fa = float_activations_;
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::QkvRope>(static_cast<int>(E), f16, fa);
  allow_gemv_smem<Prologue::F16, Epilogue::AddResidual>(static_cast<int>(H * D), f16, fa);
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::SwiGlu>(static_cast<int>(E), f16, fa);
  allow_gemv_smem<Prologue::F32, Epilogue::AddResidual>(static_cast<int>(F), f16, fa);
  allow_gemv_smem<Prologue::RmsNorm, Epilogue::StoreArgmax>(static_cast<int>(E), f16, fa, kHeadRingMaxBytes);
  // Batched prefill where its GEMVs' shared memory (8 tokens' activations: Q8_1, or f32 for fp16 weights) fits
  // this device; decode steps only otherwise.
  int smem_optin = 0;
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  std::size_t prefill_smem = 0;
  for (std::size_t k : {E, H * D, F}) {
    prefill_smem = std::max(prefill_smem, gemv_smem_bytes(static_cast<int>(k), kGemvWarps, kPrefillTokens, f16 || fa));
    prefill_smem = std::max(prefill_smem, gemv_smem_bytes(static_cast<int>(k), kGemvWarps, kPrefillTokens, fa));
  }
  batched_prefill_ = prefill_smem <= static_cast<std::size_t>(smem_optin);
  if (batched_prefill_) {
    allow_gemv_smem<Prologue::RmsNorm, Epilogue::QkvRope, kPrefillTokens>(static_cast<int>(E), f16, fa);
    allow_gemv_smem<Prologue::F16, Epilogue::AddResidual, kPrefillTokens>(static_cast<int>(H * D), f16, fa);
    allow_gemv_smem<Prologue::RmsNorm, Epilogue::SwiGlu, kPrefillTokens>(static_cast<int>(E), f16, fa);
    allow_gemv_smem<Prologue::F32, Epilogue::AddResidual, kPrefillTokens>(static_cast<int>(F), f16, fa);
  }
  // The persistent step's limits are checked before anything is allocated or copied.
  if (mode == GpuStepMode::Persistent) check_persistent();

  // Lay every piece out in one device buffer, then copy (fp16 matrices: staged on the device and converted).
  struct Piece {
    const void* host;
    std::size_t bytes;   // on the device
    std::size_t offset;
    int to_f16_from;     // -1: copied as is; else the host type converted to fp16 (F32 = 0 or a quantized type)
    int rows, cols, src_row_bytes;  // fp16 pieces: the host matrix's shape and row size
    std::string name;
  };
  std::vector<Piece> pieces;
  std::size_t total = 0;
  auto add = [&](const void* host, std::size_t bytes) {
    pieces.push_back({host, bytes, total, -1, 0, 0, 0, {}});
    total += align_up(bytes);
    return pieces.size() - 1;
  };
  auto add_matrix = [&](const cpu::WeightView& w, const std::string& name, std::size_t rows, std::size_t cols) {
    check_matrix(w, name, rows, cols);
    if (!runs_f16(w)) return add(w.data, rows * host_row_bytes(w));
    const std::size_t i = add(w.data, rows * cols * sizeof(__half));
    pieces[i].to_f16_from = host_type(w);
    pieces[i].rows = static_cast<int>(rows);
    pieces[i].cols = static_cast<int>(cols);
    pieces[i].src_row_bytes = static_cast<int>(host_row_bytes(w));
    pieces[i].name = name;
    return i;
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
  std::size_t staging_bytes = 0;
  for (const Piece& pc : pieces) {
    if (pc.to_f16_from < 0) {
      weights_->copy_from_host(pc.host, pc.bytes, pc.offset, stream_.get());
    } else {
      staging_bytes = std::max(staging_bytes, static_cast<std::size_t>(pc.rows) * pc.src_row_bytes);
    }
  }
  if (staging_bytes > 0) {
    DeviceBuffer staging(staging_bytes);
    DeviceBuffer bad(sizeof(int));
    for (const Piece& pc : pieces) {
      if (pc.to_f16_from < 0) continue;
      staging.copy_from_host(pc.host, static_cast<std::size_t>(pc.rows) * pc.src_row_bytes, 0, stream_.get());
      bad.fill_bytes(0, stream_.get());
      auto* dst = reinterpret_cast<__half*>(static_cast<std::uint8_t*>(weights_->data()) + pc.offset);
      to_f16_kernel<<<4 * multiprocessors_, 256, 0, stream_.get()>>>(static_cast<const std::uint8_t*>(staging.data()),
                                                                     pc.to_f16_from, pc.rows, pc.cols, pc.src_row_bytes, dst,
                                                                     static_cast<int*>(bad.data()));
      EDGELLM_CUDA_CHECK(cudaGetLastError());
      int n_bad = 0;
      EDGELLM_CUDA_CHECK(cudaMemcpyAsync(&n_bad, bad.data(), sizeof(int), cudaMemcpyDeviceToHost, stream_.get()));
      stream_.synchronize();
      if (n_bad != 0) {
        throw std::invalid_argument("GpuEngine: tensor '" + pc.name + "' has " + std::to_string(n_bad) +
                                    " values that are not finite in fp16 (|x| > 65504, inf or NaN); the GPU engine "
                                    "runs such matrices as fp16 weights (use device=\"cpu\")");
      }
    }
  }
  auto base = static_cast<const std::uint8_t*>(weights_->data());
  auto fptr = [&](std::size_t i) { return i == SIZE_MAX ? nullptr : reinterpret_cast<const float*>(base + pieces[i].offset); };
  auto mat = [&](std::size_t i, const cpu::WeightView& w) {
    const int type = pieces[i].to_f16_from >= 0 ? kTypeF16 : host_type(w);
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
  // Activations for kPrefillTokens tokens (a decode step uses row 0).
  const std::size_t T = kPrefillTokens;
  x_ = std::make_unique<DeviceBuffer>(T * E * sizeof(float));
  q_ = std::make_unique<DeviceBuffer>(T * qd * sizeof(__half));
  o_ = std::make_unique<DeviceBuffer>(T * qd * sizeof(__half));
  act_ = std::make_unique<DeviceBuffer>(T * F * sizeof(float));
  prefill_io_ = std::make_unique<DeviceBuffer>((2 * T + 4) * sizeof(int));  // tokens [T], state [4], lens [T]
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(prefill_io_->data(), 0, prefill_io_->bytes(), stream_.get()));
  logits_ = std::make_unique<DeviceBuffer>(V * sizeof(float));
  state_ = std::make_unique<DeviceBuffer>(4 * sizeof(int));
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(state_->data(), 0, state_->bytes(), stream_.get()));
  int* pinned = nullptr;
  EDGELLM_CUDA_CHECK(cudaMallocHost(&pinned, (kPrefillTokens + 2) * sizeof(int)));
  host_io_.reset(pinned);
  EDGELLM_CUDA_CHECK(cudaMallocHost(&pinned, kMaxInFlight * kStepSlotInts * sizeof(int)));
  step_io_.reset(pinned);
  EDGELLM_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&step_io_device_), pinned, 0));
  head_argmax_ = std::make_unique<DeviceBuffer>(2 * sizeof(unsigned long long));  // {key, arrivals}: zero
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(head_argmax_->data(), 0, head_argmax_->bytes(), stream_.get()));
  for (int i = 0; i < kMaxInFlight; ++i) {
    cudaEvent_t e = nullptr;
    EDGELLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    step_done_.emplace_back(e);
  }
  stream_.synchronize();
  if (mode == GpuStepMode::Persistent) setup_persistent();
}

void GpuEngine::check_persistent() const {
  const cpu::EngineConfig& c = config_;
  int device = 0, cooperative = 0;
  EDGELLM_CUDA_CHECK(cudaGetDevice(&device));
  EDGELLM_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  std::string why;
  if (c.n_head / c.n_head_kv > static_cast<std::size_t>(kPersistentMaxGqa)) {
    why = "n_head / n_head_kv is " + std::to_string(c.n_head / c.n_head_kv) + " (at most " +
          std::to_string(kPersistentMaxGqa) + ")";
  } else if (!cooperative) {
    why = "the device does not support cooperative launches";
  } else if (!persistent_fits(c, multiprocessors_)) {
    why = "one " + std::to_string(kPersistentThreads) + "-thread block per SM does not fit (" +
          std::to_string(persistent_smem_bytes(c, multiprocessors_)) + " bytes of shared memory)";
  }
  if (why.empty() && float_activations_) why = "it quantizes activations to Q8_1 (activations \"f32\" is graph only)";
  if (why.empty() && fp16_matrices_ > 0) {
    why = std::to_string(fp16_matrices_) + " matrices would run with fp16 weights (the file holds them as F16, BF16, "
          "F32 or a type without a quantized GEMV here), which only the graph step runs";
  }
  if (!why.empty()) throw std::invalid_argument("GpuEngine: the persistent step cannot run: " + why);
}

void GpuEngine::setup_persistent() {
  const cpu::EngineConfig& c = config_;
  persistent_ = true;
  layer_type_ = layers_.front().wq.type;
  for (const DeviceLayer& d : layers_) {
    for (const DeviceMatrix* w : {&d.wq, &d.wk, &d.wv, &d.wo, &d.gate, &d.up, &d.down}) {
      if (w->type != layer_type_) layer_type_ = 0;
    }
  }
  const std::size_t G = c.n_head_kv, r = c.n_head / c.n_head_kv, D = c.head_dim;
  o32_ = std::make_unique<DeviceBuffer>(c.n_head * D * sizeof(float));
  std::vector<GemvParams> gemvs;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const StepGemvs g = layer_gemvs(l, o32_->data());
    gemvs.insert(gemvs.end(), g.p, g.p + 4);
  }
  gemvs.push_back(head_gemv());
  for (GemvParams& g : gemvs) g.ksplit = gemv_ksplit(g.k, kPersistentWarps);
  gemv_dev_ = std::make_unique<DeviceBuffer>(gemvs.size() * sizeof(GemvParams));
  gemv_dev_->copy_from_host(gemvs.data(), gemv_dev_->bytes(), 0, stream_.get());
  attn_max_chunks_ = persistent_attn_max_chunks(static_cast<int>(G), static_cast<int>(c.max_seq), multiprocessors_);
  attn_partial_ = std::make_unique<DeviceBuffer>(G * attn_max_chunks_ * r * (D / 2 + 1) * sizeof(float2));
  sync_ = std::make_unique<DeviceBuffer>(align_up((1 + G) * sizeof(unsigned)) + sizeof(unsigned long long));
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(sync_->data(), 0, sync_->bytes(), stream_.get()));
  persistent_smem_ = persistent_smem_bytes(c, multiprocessors_);
  stream_.synchronize();
}

GpuEngine::~GpuEngine() {
  buckets_.clear();
  persistent_graph_.reset();
}

std::size_t GpuEngine::device_bytes() const {
  std::size_t n = weights_->bytes() + k_cache_->bytes() + v_cache_->bytes() + x_->bytes() + q_->bytes() + o_->bytes() +
                  act_->bytes() + logits_->bytes() + state_->bytes() + prefill_io_->bytes();
  for (const auto& b : buckets_) {
    for (const auto& op : b->attention) n += op->workspace_bytes();
    for (const auto& op : b->prefill_attention) n += op->workspace_bytes();
  }
  for (const auto* buf : {&gemv_dev_, &o32_, &attn_partial_, &sync_, &trace_}) {
    if (*buf) n += (*buf)->bytes();
  }
  return n;
}

// The GEMVs of layer l (both step modes; ksplit is set by the launcher): attention output o_in is fp16 (graph:
// fa2_decode's) or f32 (persistent).
StepGemvs GpuEngine::layer_gemvs(std::size_t l, const void* o_in) const {
  const cpu::EngineConfig& c = config_;
  const int E = static_cast<int>(c.n_embd), F = static_cast<int>(c.n_ff);
  const int qd = static_cast<int>(c.n_head * c.head_dim), kvd = static_cast<int>(c.n_head_kv * c.head_dim);
  const std::size_t layer_cache = c.n_head_kv * c.max_seq * c.head_dim;
  float* x = static_cast<float*>(x_->data());
  const DeviceLayer& L = layers_[l];
  StepGemvs g;
  GemvParams& qkv = g.p[0];
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
  qkv.state = static_cast<const int*>(state_->data());

  GemvParams& wo = g.p[1];
  wo.seg[0] = segment(L.wo);
  wo.k = qd;
  wo.n_pairs = (E + 1) / 2;
  wo.in = o_in;
  wo.out = x;

  GemvParams& up = g.p[2];
  up.seg[0] = segment(L.gate);
  up.seg[1] = segment(L.up);
  up.k = E;
  up.n_pairs = F;
  up.in = x;
  up.norm_w = L.ffn_norm;
  up.eps = c.rms_eps;
  up.out = static_cast<float*>(act_->data());

  GemvParams& down = g.p[3];
  down.seg[0] = segment(L.down);
  down.k = F;
  down.n_pairs = (E + 1) / 2;
  down.in = act_->data();
  down.out = x;
  return g;
}

GemvParams GpuEngine::head_gemv() const {
  GemvParams head;
  head.seg[0] = segment(output_);
  head.k = static_cast<int>(config_.n_embd);
  head.n_pairs = (output_.rows + 1) / 2;
  head.in = x_->data();
  head.norm_w = output_norm_;
  head.eps = config_.rms_eps;
  head.out = static_cast<float*>(logits_->data());
  return head;
}

void GpuEngine::enqueue_step(Bucket& b, cudaStream_t stream) {
  const cpu::EngineConfig& c = config_;
  const auto& attention = attention_ops(b, false);
  int* state = static_cast<int*>(state_->data());
  unsigned long long* trace = trace_ ? static_cast<unsigned long long*>(trace_->data()) : nullptr;
  if (trace) EDGELLM_CUDA_CHECK(cudaMemsetAsync(trace, 0xFF, trace_->bytes(), stream));  // see gemv_q8_kernel
  auto traced = [&](GemvParams p) {
    if (trace) {
      p.trace = trace;
      trace += 4;
    }
    return p;
  };
  embed_kernel<<<1, kEmbedThreads, 0, stream>>>(segment(tok_embd_), static_cast<int>(c.n_embd), state, state,
                                                state + 2, static_cast<float*>(x_->data()));
  EDGELLM_CUDA_CHECK_LAUNCH("gpu engine embed");
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    StepGemvs g = layer_gemvs(l, o_->data());
    for (GemvParams& p : g.p) p = traced(p);
    launch_gemv<Prologue::RmsNorm, Epilogue::QkvRope>(g.p[0], 3, multiprocessors_, programmatic_, float_activations_, stream);
    attention[l]->launch(stream);
    launch_gemv<Prologue::F16, Epilogue::AddResidual>(g.p[1], 1, multiprocessors_, programmatic_, float_activations_, stream);
    launch_gemv<Prologue::RmsNorm, Epilogue::SwiGlu>(g.p[2], 2, multiprocessors_, programmatic_, float_activations_, stream);
    launch_gemv<Prologue::F32, Epilogue::AddResidual>(g.p[3], 1, multiprocessors_, programmatic_, float_activations_, stream);
  }
  GemvParams head = traced(head_gemv());
  const int ksplit = head_ksplit(head.k);
  head.head_streams = head_streams(head.seg[0], ksplit) ? 1 : 0;
  head.argmax = static_cast<unsigned long long*>(head_argmax_->data());
  head.step_state = state;
  head.token_ring = step_io_device_ + 2;  // the token's word of each {token, position} in, token out slot
  head.ring_slots = kMaxInFlight;
  head.ring_stride = kStepSlotInts;
  launch_gemv<Prologue::RmsNorm, Epilogue::StoreArgmax>(head, 1, multiprocessors_, programmatic_, float_activations_,
                                                       stream, ksplit);
}

// A batched prefill step: kPrefillTokens prompt tokens (prefill_io_: tokens, state {-, position}, lens) through
// every layer with the same kernels, each GEMV weight load serving all of them, the attention one fa2_decode
// launch with a query per token over the shared cache (token t sees position + t + 1 keys: causal). No LM head.
void GpuEngine::enqueue_prefill(Bucket& b, cudaStream_t stream) {
  const cpu::EngineConfig& c = config_;
  const auto& attention = attention_ops(b, true);
  constexpr int T = kPrefillTokens;
  int* io = static_cast<int*>(prefill_io_->data());
  const int* state = io + T;
  embed_kernel<<<T, kEmbedThreads, 0, stream>>>(segment(tok_embd_), static_cast<int>(c.n_embd), io, state,
                                                io + T + 4, static_cast<float*>(x_->data()));
  EDGELLM_CUDA_CHECK_LAUNCH("gpu engine prefill embed");
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    StepGemvs g = layer_gemvs(l, o_->data());
    g.p[0].state = state;
    g.p[1].out_stride = static_cast<int>(c.n_embd);
    g.p[2].out_stride = static_cast<int>(c.n_ff);
    g.p[3].out_stride = static_cast<int>(c.n_embd);
    launch_gemv<Prologue::RmsNorm, Epilogue::QkvRope, T>(g.p[0], 3, multiprocessors_, false, float_activations_, stream);
    attention[l]->launch(stream);
    launch_gemv<Prologue::F16, Epilogue::AddResidual, T>(g.p[1], 1, multiprocessors_, false, float_activations_, stream);
    launch_gemv<Prologue::RmsNorm, Epilogue::SwiGlu, T>(g.p[2], 2, multiprocessors_, false, float_activations_, stream);
    launch_gemv<Prologue::F32, Epilogue::AddResidual, T>(g.p[3], 1, multiprocessors_, false, float_activations_, stream);
  }
}

GpuEngine::Bucket& GpuEngine::bucket_for(std::size_t length) {
  for (auto& b : buckets_) {
    if (length <= static_cast<std::size_t>(b->length_hint)) return *b;
  }
  // Buckets 256, 1024, 4096, ... (x4), the last one max_seq; their attention ops and graphs made on first use.
  std::size_t hint = 256;
  while (hint < length) hint *= 4;
  auto b = std::make_unique<Bucket>();
  b->length_hint = static_cast<int>(std::min(hint, config_.max_seq));
  buckets_.push_back(std::move(b));
  return *buckets_.back();
}

// The bucket's fa2_decode ops, one per layer (each with its own split workspace), made on first use (before a
// capture: they allocate device memory): one query
// (decode), or kPrefillTokens queries over the shared cache with their lengths in prefill_io_ (prefill).
std::vector<std::unique_ptr<Fa2DecodeOp>>& GpuEngine::attention_ops(Bucket& b, bool prefill) {
  auto& ops = prefill ? b.prefill_attention : b.attention;
  if (!ops.empty()) return ops;
  const cpu::EngineConfig& c = config_;
  Fa2DecodeShape shape;
  shape.batch = prefill ? kPrefillTokens : 1;
  shape.kv_shared = prefill;
  shape.q_heads = static_cast<int>(c.n_head);
  shape.kv_heads = static_cast<int>(c.n_head_kv);
  shape.head_dim = static_cast<int>(c.head_dim);
  shape.max_seq = static_cast<int>(c.max_seq);
  shape.dtype = DType::F16;
  const std::size_t layer_cache = c.n_head_kv * c.max_seq * c.head_dim * sizeof(__half);
  const auto k_base = reinterpret_cast<std::uintptr_t>(k_cache_->data());
  const auto v_base = reinterpret_cast<std::uintptr_t>(v_cache_->data());
  const int* lens = prefill ? static_cast<int*>(prefill_io_->data()) + kPrefillTokens + 4
                            : static_cast<int*>(state_->data()) + 2;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    // Decode: the attention is launched programmatically like the GEMVs (Fa2DecodeOp::set_programmatic: before its
    // wait it loads only cache rows the QKV GEMV does not write, q and the newest row after it, through L2), and
    // lets the o-projection launch only when it ends. Random SmolLM2-shaped model, H200, tok/s at depths 0 / 1000 /
    // 4000: 2243 / 1766 / 1774 against 2176 / 1766 / 1744 plain-launched, and 2115 / 1702 / 1729 when it also
    // triggered the o-projection at its top (bench/results/experiments_tenth_session/).
    // Two earlier attempts launched the kernel programmatically and got run-to-run differences (cause not found;
    // candidates this version rules out: loads before the wait bounded by the split's chunk rather than by the
    // length, which can reach the newest row, and q or that row read through the non-coherent path). Prefill
    // chunks stay plain launches (they write several rows per sequence). docs/engine.md has the stage trace.
    // Up to kDecodeSimtMaxKeys keys, decode uses the SIMT kernel even where the tensor-core one wins in isolation
    // (fa2_default_variant: from 4096 keys, on single launches with the L2 flushed). Random SmolLM2-shaped model,
    // H200, decode tok/s, both choices built and run alternately in one call (two rounds;
    // bench/results/experiments_fourteenth_session/): since the tensor-core kernel's ring is 128-byte aligned,
    // the 4232-key bucket (depth 4096) 1745 / 1745 SIMT vs 1726 / 1729 tensor cores, the 7136-key bucket (depth
    // 7000) 1647 / 1641 vs 1660 / 1664: the crossover lies between the two; 6144 lies between, not itself measured.
    // (Before the alignment fix the tensor-core kernel lost at both, 1668-1677 vs 1752 and 1606-1610 vs
    // 1644-1652: experiments_thirteenth_session.) Why SIMT still wins at 4232 keys in the engine but not in
    // isolation is not established; one difference is that the SIMT kernel loads its first rows before its
    // programmatic wait and the tensor-core kernel nothing.
    const Fa2Variant variant = !prefill && b.length_hint <= kDecodeSimtMaxKeys ? Fa2Variant::Simt : Fa2Variant::Auto;
    ops.push_back(std::make_unique<Fa2DecodeOp>(
        shape, reinterpret_cast<std::uintptr_t>(q_->data()), k_base + l * layer_cache, v_base + l * layer_cache,
        reinterpret_cast<std::uintptr_t>(lens), reinterpret_cast<std::uintptr_t>(o_->data()), scale, b.length_hint,
        0, 0, variant));
    if (!prefill && programmatic_) ops.back()->set_programmatic(true);
    if (!prefill) b.decode_merge_kernels += ops.back()->kernels_per_launch() - 1;
  }
  return ops;
}

void GpuEngine::enqueue_persistent_step(cudaStream_t stream) {
  const cpu::EngineConfig& c = config_;
  PersistentStep p;
  p.gemv = static_cast<const GemvParams*>(gemv_dev_->data());
  p.tok_embd = tok_embd_;
  p.n_layer = static_cast<int>(c.n_layer);
  p.n_embd = static_cast<int>(c.n_embd);
  p.n_head = static_cast<int>(c.n_head);
  p.n_head_kv = static_cast<int>(c.n_head_kv);
  p.head_dim = static_cast<int>(c.head_dim);
  p.max_seq = static_cast<int>(c.max_seq);
  p.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.k_cache = static_cast<__half*>(k_cache_->data());
  p.v_cache = static_cast<__half*>(v_cache_->data());
  p.x = static_cast<float*>(x_->data());
  p.q = static_cast<__half*>(q_->data());
  p.o = static_cast<float*>(o32_->data());
  p.state = static_cast<int*>(state_->data());
  p.attn_partial = static_cast<float*>(attn_partial_->data());
  p.attn_max_chunks = attn_max_chunks_;
  p.sync = static_cast<unsigned*>(sync_->data());
  p.argmax = reinterpret_cast<unsigned long long*>(static_cast<unsigned char*>(sync_->data()) +
                                                    align_up((1 + c.n_head_kv) * sizeof(unsigned)));
  p.trace = trace_ ? static_cast<unsigned long long*>(trace_->data()) : nullptr;
  EDGELLM_CUDA_CHECK(cudaMemsetAsync(sync_->data(), 0, sync_->bytes(), stream));
  launch_persistent_step(p, layer_type_, output_.type, multiprocessors_, persistent_smem_, stream);
}

// Captures what `enqueue` puts on the engine's stream into g (once).
template <class Enqueue>
void GpuEngine::capture(Graph& g, Enqueue enqueue) {
  cudaStream_t s = stream_.get();
  EDGELLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue(s);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(s, &broken);
    if (broken) cudaGraphDestroy(broken);
    throw;
  }
  EDGELLM_CUDA_CHECK(cudaStreamEndCapture(s, &g.graph));
  const cudaError_t err = cudaGraphInstantiate(&g.exec, g.graph, 0);
  if (err != cudaSuccess) {  // leave g empty: the next step captures again
    cudaGraphDestroy(g.graph);
    g.graph = nullptr;
    g.exec = nullptr;
    EDGELLM_CUDA_CHECK(err);
  }
  EDGELLM_CUDA_CHECK(cudaGraphGetNodes(g.graph, nullptr, &g.nodes));
}

void GpuEngine::check_tokens(const long long* tokens, std::size_t n) const {
  cpu::check_decode_tokens(config_, n_past_, tokens, n);
}

void GpuEngine::submit(long long token) {
  if (in_flight() == kMaxInFlight) {
    throw std::logic_error("GpuEngine::submit: " + std::to_string(kMaxInFlight) + " steps in flight; collect first");
  }
  const bool on_device = token == kTokenOnDevice;
  if (on_device && !device_state_current_) {
    throw std::logic_error("GpuEngine::submit: no previous step's token on the device (before the first step or "
                           "after truncate): pass the token id");
  }
  const long long checked = on_device ? 0 : token;  // the device's token came from an argmax: only the context
  check_tokens(&checked, 1);
  Graph* graph = nullptr;
  if (persistent_) {  // one graph for every length: the kernel reads the position itself
    if (!persistent_graph_) {
      auto g = std::make_unique<Graph>();
      capture(*g, [&](cudaStream_t st) { enqueue_persistent_step(st); });
      persistent_graph_ = std::move(g);
    }
    graph = persistent_graph_.get();
  } else {
    Bucket& b = bucket_for(n_past_ + 1);
    if (!b.decode.exec) {
      attention_ops(b, false);  // allocates workspaces: not allowed while capturing
      capture(b.decode, [&](cudaStream_t st) { enqueue_step(b, st); });
    }
    graph = &b.decode;
    last_merge_kernels_ = b.decode_merge_kernels;
  }
  cudaStream_t s = stream_.get();
  const int slot = static_cast<int>(submitted_ % kMaxInFlight);
  int* io = step_io_.get() + slot * kStepSlotInts;  // free: its previous step was collected
  last_h2d_bytes_ = 0;
  if (!on_device && (!device_state_current_ || token != last_argmax_)) {
    // The device holds the position n_past_ unless truncate() changed it; write what differs.
    io[0] = static_cast<int>(token);
    io[1] = static_cast<int>(n_past_);
    const std::size_t bytes = device_state_current_ ? sizeof(int) : 2 * sizeof(int);
    EDGELLM_CUDA_CHECK(cudaMemcpyAsync(state_->data(), io, bytes, cudaMemcpyHostToDevice, s));
    last_h2d_bytes_ = bytes;
  }
  device_state_current_ = false;  // until this step is enqueued: a failure below leaves the device state unknown
  EDGELLM_CUDA_CHECK(cudaGraphLaunch(graph->exec, s));
  if (!persistent_) {  // the LM head's last block writes the token into the slot of this position (finish_argmax)
    step_token_slot_[slot] = static_cast<int>(n_past_ % kMaxInFlight);
  } else {
    step_token_slot_[slot] = slot;
    EDGELLM_CUDA_CHECK(cudaMemcpyAsync(io + 2, state_->data(), sizeof(int), cudaMemcpyDeviceToHost, s));
  }
  EDGELLM_CUDA_CHECK(cudaEventRecord(step_done_[slot].get(), s));
  ++submitted_;
  ++n_past_;
  device_state_current_ = true;  // {this step's argmax, n_past_}
  last_argmax_ = -1;             // known once collected
  last_d2h_bytes_ = sizeof(int);
  last_graph_nodes_ = graph->nodes;
}

long long GpuEngine::collect() {
  if (in_flight() == 0) throw std::logic_error("GpuEngine::collect: no step in flight");
  const int slot = static_cast<int>(collected_ % kMaxInFlight);
  const cudaError_t err = cudaEventSynchronize(step_done_[slot].get());
  if (err != cudaSuccess) {  // the device state is unknown: the next step writes token and position again
    device_state_current_ = false;
    collected_ = submitted_;
    EDGELLM_CUDA_CHECK(err);
  }
  const long long token = step_io_.get()[step_token_slot_[slot] * kStepSlotInts + 2];
  ++collected_;
  if (in_flight() == 0) last_argmax_ = token;  // the newest step's: what the device holds
  return token;
}

void GpuEngine::drain() {
  if (in_flight() == 0) return;
  collected_ = submitted_;
  stream_.synchronize();
}

long long GpuEngine::step(long long token, float* logits) {
  if (in_flight() > 0) {
    throw std::logic_error("GpuEngine::step: " + std::to_string(in_flight()) + " submitted step(s) not collected");
  }
  submit(token);
  const long long best = collect();
  if (logits) {
    EDGELLM_CUDA_CHECK(cudaMemcpy(logits, logits_->data(), config_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost));
    last_d2h_bytes_ += config_.n_vocab * sizeof(float);
  }
  return best;
}

long long GpuEngine::prefill(const long long* tokens, std::size_t n, float* logits) {
  if (n == 0) throw std::invalid_argument("GpuEngine: no tokens to prefill");
  if (in_flight() > 0) {
    throw std::logic_error("GpuEngine::prefill: " + std::to_string(in_flight()) + " submitted step(s) not collected");
  }
  check_tokens(tokens, n);
  // Batched steps of kPrefillTokens while more than that many remain (the last token always goes through a
  // decode step, which runs the LM head), then decode steps.
  std::size_t i = 0;
  cudaStream_t s = stream_.get();
  // A failure part way leaves n_past() at the tokens run so far (their cache entries are written).
  while (batched_prefill_ && n - i > static_cast<std::size_t>(kPrefillTokens)) {
    Bucket& b = bucket_for(n_past_ + kPrefillTokens);
    if (!b.prefill.exec) {
      attention_ops(b, true);  // allocates workspaces: not allowed while capturing
      capture(b.prefill, [&](cudaStream_t st) { enqueue_prefill(b, st); });
    }
    int* io = host_io_.get();
    for (int t = 0; t < kPrefillTokens; ++t) io[t] = static_cast<int>(tokens[i + t]);
    io[kPrefillTokens] = 0;
    io[kPrefillTokens + 1] = static_cast<int>(n_past_);  // the chunk's first position
    device_state_current_ = false;  // the next decode step writes its token and position
    EDGELLM_CUDA_CHECK(cudaMemcpyAsync(prefill_io_->data(), io, (kPrefillTokens + 2) * sizeof(int),
                                       cudaMemcpyHostToDevice, s));
    EDGELLM_CUDA_CHECK(cudaGraphLaunch(b.prefill.exec, s));
    EDGELLM_CUDA_CHECK(cudaStreamSynchronize(s));  // host_io_ is rewritten by the next chunk
    n_past_ += kPrefillTokens;
    i += kPrefillTokens;
  }
  long long best = -1;
  for (; i < n; ++i) best = step(tokens[i], i + 1 == n ? logits : nullptr);
  return best;
}

void GpuEngine::enable_stage_trace() {
  if (trace_) return;
  drain();
  trace_ = std::make_unique<DeviceBuffer>(stage_trace_entries() * sizeof(unsigned long long));
  trace_->fill_bytes(0, stream_.get());  // zeros until a step has run
  stream_.synchronize();
  persistent_graph_.reset();  // the step graphs are captured again with the trace at the next step
  for (auto& b : buckets_) b->decode.reset();
}

std::size_t GpuEngine::stage_trace_entries() const {
  return persistent_ ? 1 + 2 * (5 * config_.n_layer + 2) : 4 * (4 * config_.n_layer + 1);
}

std::vector<unsigned long long> GpuEngine::stage_trace() const {
  std::vector<unsigned long long> t;
  if (!trace_) return t;
  t.resize(stage_trace_entries());
  trace_->copy_to_host(t.data(), t.size() * sizeof(unsigned long long), 0, stream_.get());
  if (!persistent_) {  // the latest times are stored complemented (gemv_q8_kernel); a slot never written stays 0
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (i % 4 >= 2) t[i] = ~t[i];
      if (t[i] == ~0ull) t[i] = 0;
    }
  }
  return t;
}

void GpuEngine::truncate(std::size_t n) {
  if (n > n_past_) {
    throw std::invalid_argument("truncate: " + std::to_string(n) + " > n_past " + std::to_string(n_past_));
  }
  drain();
  n_past_ = n;
  device_state_current_ = false;  // the next step writes token and position
}

}  // namespace edgellm::cuda
