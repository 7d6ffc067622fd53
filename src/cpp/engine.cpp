// CPU decode engine (engine.h): validation, the worker pool and the per-token step.
#include "engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "basic_kernels_impl.h"
#include "engine_kernels.h"
#include "kv_cache.h"
#include "quant.h"
#include "quant_impl.h"
#include "simd/dispatch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EDGELLM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define EDGELLM_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define EDGELLM_CPU_RELAX() ((void)0)
#endif

namespace edgellm::cpu {

// ---------------------------------------------------------------------------------------------------------------
// Worker pool. A decode step hands out ~6 jobs per layer (180+ per token for 30 layers), each a few to a few
// hundred microseconds, so waking workers through a condition variable (~5-50 us per wake-up) would cost more
// than the work: workers spin on the job word first (as ggml's threadpool does), then yield, then sleep, so an
// idle engine (e.g. between generate() calls) does not burn a core. The spin phase is short (kSpinRounds pauses,
// ~0.1-0.3 ms; the jobs of a step follow each other within microseconds).
//
// A job is n_chunks independent chunks, split into one contiguous range per thread. Each thread claims the chunks
// of its own range one at a time (compare-and-swap on that range's word: job sequence number << 32 | next chunk),
// then claims what is left of the other threads' ranges the same way; the caller then waits only for chunks that
// were claimed and are still running. So a worker that is not on a core (a busy machine: our threads may share a
// core with other processes) delays nothing it has not started: the others take over its chunks. Which thread
// runs a chunk never changes the chunk's result.
// Why per-thread ranges rather than one shared next-chunk word: a claim on a word that another core wrote last
// moves its cache line between cores (~0.1-0.2 us), about the time of a 32-row chunk of a decode matvec, and
// with one shared word every claim did that. Own-range claims stay in the owner's cache; only steals at the end
// of a job cross cores (measured on the 2-core VM: decode 205 -> 221 tok/s going from ~16 shared-word chunks per
// thread to a static split, hence this design, which keeps the balancing of small chunks).
class SpinPool {
 public:
  using Job = std::function<void(std::size_t chunk, int tid)>;

  explicit SpinPool(int n_threads) : n_(n_threads), slots_(static_cast<std::size_t>(n_threads)) {
    for (int t = 1; t < n_; ++t) threads_.emplace_back([this, t]() { worker(t); });
  }
  ~SpinPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
      cv_.notify_all();
    }
    for (std::thread& th : threads_) th.join();
  }

  int n_threads() const { return n_; }

  // Runs fn(c, tid) for every c in [0, n_chunks) and returns when all have finished. fn must not throw.
  void run(std::size_t n_chunks, const Job& fn) {
    if (n_ == 1 || n_chunks <= 1) {
      for (std::size_t c = 0; c < n_chunks; ++c) fn(c, 0);
      return;
    }
    // No worker can claim anything now: every chunk of the previous job has completed, and a claim needs the new
    // sequence number in a range word, published below; the job word that workers wait on comes last (seq_cst:
    // also ordered before the sleepers_ load). A worker still leaving the previous job may read a range word
    // before its reset and `end` after it (a larger end would let its compare-and-swap on the old word claim a
    // chunk that does not exist), so each range word is reset before its end, and `end` is stored with release
    // and read with acquire: whoever sees the new end then fails its compare-and-swap on the old word.
    job_ = &fn;
    const std::uint32_t seq = ++seq_;
    const std::size_t n = static_cast<std::size_t>(n_);
    for (std::size_t t = 0; t < n; ++t) {
      Slot& s = slots_[t];
      s.done.store(0, std::memory_order_relaxed);
      s.next.store(static_cast<std::uint64_t>(seq) << 32 | (n_chunks * t / n), std::memory_order_relaxed);
      s.end.store(static_cast<std::uint32_t>(n_chunks * (t + 1) / n), std::memory_order_release);
    }
    job_word_.store(seq);
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
    }
    work(seq, 0);
    for (unsigned spins = 0;; ++spins) {
      std::size_t done = 0;
      for (const Slot& s : slots_) done += s.done.load(std::memory_order_acquire);
      if (done == n_chunks) break;
      if (spins < kSpinRounds) EDGELLM_CPU_RELAX();
      else std::this_thread::yield();  // a worker was descheduled mid-chunk (busy machine): let it run
    }
  }

 private:
  static constexpr unsigned kSpinRounds = 1u << 11;

  // One thread's range of the current job, on its own cache line (the owner's claims do not disturb the others).
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> next{0};  // job sequence number << 32 | next unclaimed chunk of the range
    std::atomic<std::uint32_t> end{0};   // one past the range's last chunk
    std::atomic<std::uint32_t> done{0};  // chunks of this job completed by the slot's thread (any range)
  };

  // Claims and runs chunks of job `seq`, own range first, then the others', until none is left (or the job has
  // moved on: a range word with another sequence number).
  void work(std::uint32_t seq, int tid) {
    for (int k = 0; k < n_; ++k) {
      Slot& s = slots_[static_cast<std::size_t>((tid + k) % n_)];
      std::uint64_t w = s.next.load(std::memory_order_acquire);
      for (;;) {
        if (static_cast<std::uint32_t>(w >> 32) != seq) return;
        // If the word has moved on since `w` was read, `end` may be a later job's: the CAS then fails (see run()).
        if (static_cast<std::uint32_t>(w) >= s.end.load(std::memory_order_acquire)) break;
        if (s.next.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
          // Claimed: job `seq` cannot be replaced before this chunk is counted complete.
          (*job_)(static_cast<std::uint32_t>(w), tid);
          Slot& mine = slots_[static_cast<std::size_t>(tid)];
          mine.done.store(mine.done.load(std::memory_order_relaxed) + 1, std::memory_order_release);
          w = s.next.load(std::memory_order_acquire);
        }
      }
    }
  }

  void worker(int tid) {
    std::uint32_t seen = 0;
    for (;;) {
      std::uint32_t seq;
      unsigned spins = 0;
      while ((seq = job_word_.load(std::memory_order_acquire)) == seen) {
        if (stop_.load(std::memory_order_relaxed)) return;
        if (++spins < kSpinRounds) {
          EDGELLM_CPU_RELAX();
        } else if (spins < 2 * kSpinRounds) {
          std::this_thread::yield();
        } else {
          // sleepers_ is raised before the predicate reads job_word_ (both seq_cst): either run() sees the
          // sleeper and notifies under the mutex, or this thread sees the new job. No lost wake-up.
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1);
          cv_.wait(lock, [&]() { return stop_.load() || job_word_.load() != seen; });
          sleepers_.fetch_sub(1);
          spins = 0;
        }
      }
      seen = seq;
      work(seq, tid);
    }
  }

  const int n_;
  std::vector<std::thread> threads_;
  std::vector<Slot> slots_;                 // one per thread, the caller's first
  alignas(64) std::atomic<std::uint32_t> job_word_{0};  // sequence number of the latest job
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::uint32_t seq_ = 0;     // only the calling thread of run() touches it
  const Job* job_ = nullptr;  // written before the job is published, read after a successful claim
  std::mutex mu_;
  std::condition_variable cv_;
};

namespace {

using DotQ8Fn = float (*)(const std::uint8_t*, const std::uint8_t*, const float*, std::size_t);
using DotF32Fn = float (*)(const float*, const float*, std::size_t);
using DequantFn = void (*)(const std::uint8_t*, float*, std::size_t);

struct PathKernels {
  DotQ8Fn dot_q4_0, dot_q4_1, dot_q8_0;
  DequantFn deq_q4_0, deq_q4_1, deq_q8_0;
  DotF32Fn dot_f32;
  Dot4Fn dot4_q4_0 = nullptr, dot4_q4_1 = nullptr, dot4_q8_0 = nullptr;  // four-row kernels where a path has them
  QuantizeActFn quantize = quantize_act_q8_scalar;
};

#define EDGELLM_ENGINE_KERNELS(ns)                                                                   \
  PathKernels {                                                                                      \
    ns::dot_q4_0_q8_0, ns::dot_q4_1_q8_0, ns::dot_q8_0_q8_0, ns::dequantize_q4_0, ns::dequantize_q4_1, \
        ns::dequantize_q8_0, ns::dot_f32                                                             \
  }

PathKernels kernels_for(SimdPath path) {
  require_simd_path(path);
  switch (path) {
#if defined(EDGELLM_HAVE_AVX2)
    case SimdPath::Avx2: {
      PathKernels k = EDGELLM_ENGINE_KERNELS(avx2);
      k.dot4_q4_0 = avx2::dot4_q4_0_q8_0;
      k.dot4_q4_1 = avx2::dot4_q4_1_q8_0;
      k.dot4_q8_0 = avx2::dot4_q8_0_q8_0;
      k.quantize = avx2::quantize_act_q8;
      return k;
    }
#endif
#if defined(EDGELLM_HAVE_NEON)
    case SimdPath::Neon: return EDGELLM_ENGINE_KERNELS(neon);
#endif
    default: return EDGELLM_ENGINE_KERNELS(scalar);
  }
}
#undef EDGELLM_ENGINE_KERNELS

std::size_t block_bytes(WeightType t) {
  switch (t) {
    case WeightType::Q4_0: return sizeof(BlockQ4_0);
    case WeightType::Q4_1: return sizeof(BlockQ4_1);
    case WeightType::Q8_0: return sizeof(BlockQ8_0);
    case WeightType::F32: return 0;
  }
  return 0;
}

std::size_t row_bytes(const WeightView& w) {
  return w.type == WeightType::F32 ? w.cols * sizeof(float) : w.cols / kQuantBlockElems * block_bytes(w.type);
}

void check_weight(const WeightView& w, const std::string& name, std::size_t rows, std::size_t cols) {
  if (w.data == nullptr) throw std::invalid_argument(name + ": missing");
  if (w.type != WeightType::F32 && w.type != WeightType::Q4_0 && w.type != WeightType::Q4_1 &&
      w.type != WeightType::Q8_0) {
    throw std::invalid_argument(name + ": weight type id " + std::to_string(static_cast<int>(w.type)) +
                                " is not supported (F32 0, Q4_0 2, Q4_1 3, Q8_0 8)");
  }
  if (w.rows != rows || w.cols != cols) {
    throw std::invalid_argument(name + ": expected shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                "], got [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "]");
  }
  if (w.type != WeightType::F32 && cols % kQuantBlockElems != 0) {
    throw std::invalid_argument(name + ": cols = " + std::to_string(cols) + " is not a multiple of 32");
  }
}

void check_vec(const float* p, const std::string& name) {
  if (p == nullptr) throw std::invalid_argument(name + ": missing");
}

// Rounds x[0, n) to the nearest binary16 value (round to nearest even), in place, on the given path.
void round_to_f16(float* x, std::size_t n, SimdPath path) {
  std::uint16_t tmp[256];
  for (std::size_t i = 0; i < n; i += 256) {
    const std::size_t m = std::min<std::size_t>(256, n - i);
    f32_to_f16_row(x + i, tmp, m, path);
    f16_to_f32_row(tmp, x + i, m, path);
  }
}

// ggml's rms_norm (squares summed in double, mean and scale in float) followed by its mul by the weight.
void rmsnorm_ggml(const float* x, const float* w, float* y, std::size_t n, float eps) {
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (std::size_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

CpuEngine::CpuEngine(const ModelView& model, int n_threads, SimdPath path)
    : model_(model), n_threads_(n_threads), path_(path) {
  kernels_for(path);  // throws for an unsupported path
  const EngineConfig& c = model_.config;
  if (n_threads < 1 || n_threads > 256) {
    throw std::invalid_argument("n_threads: expected 1..256, got " + std::to_string(n_threads));
  }
  if (c.n_layer == 0 || c.n_embd == 0 || c.n_head == 0 || c.n_head_kv == 0 || c.head_dim == 0 || c.n_ff == 0 ||
      c.n_vocab == 0 || c.max_seq == 0) {
    throw std::invalid_argument("config: n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab and max_seq "
                                "must be positive");
  }
  if (c.n_head % c.n_head_kv != 0) {
    throw std::invalid_argument("config: n_head = " + std::to_string(c.n_head) + " is not a multiple of n_head_kv = " +
                                std::to_string(c.n_head_kv));
  }
  if (c.head_dim % 2 != 0 || c.n_rot % 2 != 0 || c.n_rot == 0 || c.n_rot > c.head_dim) {
    throw std::invalid_argument("config: head_dim (" + std::to_string(c.head_dim) + ") and n_rot (" +
                                std::to_string(c.n_rot) + ") must be even with 0 < n_rot <= head_dim");
  }
  if (!(c.rms_eps > 0.0f) || !(c.rope_base > 0.0f) || !std::isfinite(c.rope_base)) {
    throw std::invalid_argument("config: rms_eps and rope_base must be positive and finite");
  }
  if (c.max_seq > (std::size_t{1} << 24)) throw std::invalid_argument("config: max_seq above 2^24");
  if (model_.layers.size() != c.n_layer) {
    throw std::invalid_argument("layers: expected " + std::to_string(c.n_layer) + ", got " +
                                std::to_string(model_.layers.size()));
  }
  const std::size_t qd = c.n_head * c.head_dim, kvd = c.n_head_kv * c.head_dim;
  check_weight(model_.tok_embd, "token_embd", c.n_vocab, c.n_embd);
  check_weight(model_.output, "output", c.n_vocab, c.n_embd);
  check_vec(model_.output_norm, "output_norm");
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const LayerView& L = model_.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    check_vec(L.attn_norm, p + "attn_norm");
    check_vec(L.ffn_norm, p + "ffn_norm");
    check_weight(L.wq, p + "attn_q", qd, c.n_embd);
    check_weight(L.wk, p + "attn_k", kvd, c.n_embd);
    check_weight(L.wv, p + "attn_v", kvd, c.n_embd);
    check_weight(L.wo, p + "attn_output", c.n_embd, qd);
    check_weight(L.gate, p + "ffn_gate", c.n_ff, c.n_embd);
    check_weight(L.up, p + "ffn_up", c.n_ff, c.n_embd);
    check_weight(L.down, p + "ffn_down", c.n_embd, c.n_ff);
  }
  const std::size_t max_act = std::max({c.n_embd, c.n_ff, qd});
  if (max_act % kQuantBlockElems != 0) {
    throw std::invalid_argument("config: activation sizes (n_embd, n_ff, n_head*head_dim) must be multiples of 32");
  }
  const std::size_t B = kMaxBatch;
  x_.assign(B * c.n_embd, 0.0f);
  h_.assign(B * c.n_embd, 0.0f);
  tmp_.assign(B * c.n_embd, 0.0f);
  q_.assign(B * qd, 0.0f);
  o_.assign(B * qd, 0.0f);
  k_.assign(B * kvd, 0.0f);
  v_.assign(B * kvd, 0.0f);
  gate_.assign(B * c.n_ff, 0.0f);
  up_.assign(B * c.n_ff, 0.0f);
  logits_.assign(c.n_vocab, 0.0f);
  k_cache_.assign(c.n_layer * kvd * c.max_seq, 0.0f);
  v_cache_.assign(c.n_layer * kvd * c.max_seq, 0.0f);
  scores_.assign(static_cast<std::size_t>(n_threads) * c.max_seq, 0.0f);
  rope_cos_.assign(B * (c.n_rot / 2), 0.0f);
  rope_sin_.assign(B * (c.n_rot / 2), 0.0f);
  act_q_.assign(B * (max_act / kQuantBlockElems) * sizeof(BlockQ8_0), 0);
  act_s_.assign(B * (max_act / kQuantBlockElems), 0.0f);
  ffn_q_.assign(act_q_.size(), 0);
  ffn_s_.assign(act_s_.size(), 0.0f);
  pool_ = std::make_unique<SpinPool>(n_threads);
}

CpuEngine::~CpuEngine() = default;

void CpuEngine::truncate(std::size_t n) {
  if (n > n_past_) {
    throw std::invalid_argument("truncate: n = " + std::to_string(n) + " is beyond n_past = " +
                                std::to_string(n_past_));
  }
  n_past_ = n;
}

std::size_t CpuEngine::weight_bytes_per_token() const {
  std::size_t total = row_bytes(model_.tok_embd) + model_.output.rows * row_bytes(model_.output);
  for (const LayerView& L : model_.layers) {
    for (const WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) total += w->rows * row_bytes(*w);
  }
  return total;
}

// engine_kernels.h's activation quantization (ggml's SIMD quantize_row_q8_1) of the whole [n_tok, n] buffer.
void CpuEngine::quantize_act(const float* x, std::size_t n, std::size_t n_tok) {
  act_f32_ = x;
  act_stride_ = n;
  kernels_for(path_).quantize(x, n / kQuantBlockElems * n_tok, act_q_.data(), act_s_.data());
}

// Rows [i0, i1) of W for n_tok tokens: out[t * W.rows + i] = W[i] . activation t (act_q_/act_s_, or act_f32_
// for F32 weights). Each weight row is read once and multiplied with every token's activations (the row stays in
// L1 across tokens).
void CpuEngine::matvec_rows(const WeightView& W, float* out, std::size_t i, std::size_t i1, std::size_t n_tok) const {
  const PathKernels k = kernels_for(path_);
  const std::uint8_t* xq = act_q_.data();
  const float* xs = act_s_.data();
  const std::size_t nb_x = act_stride_ / kQuantBlockElems;
  const std::size_t rb = row_bytes(W);
  const std::size_t nb = W.cols / kQuantBlockElems;
  const auto* data = static_cast<const std::uint8_t*>(W.data);
  const DotQ8Fn dot = W.type == WeightType::Q4_0   ? k.dot_q4_0
                      : W.type == WeightType::Q4_1 ? k.dot_q4_1
                                                   : k.dot_q8_0;
  const Dot4Fn dot4 = W.type == WeightType::Q4_0   ? k.dot4_q4_0
                      : W.type == WeightType::Q4_1 ? k.dot4_q4_1
                      : W.type == WeightType::Q8_0 ? k.dot4_q8_0
                                                   : nullptr;
  if (dot4 != nullptr) {
    float four[4];
    for (; i + 4 <= i1; i += 4) {
      for (std::size_t t = 0; t < n_tok; ++t) {
        dot4(data + i * rb, rb, xq + t * nb_x * sizeof(BlockQ8_0), xs + t * nb_x, nb, four);
        std::memcpy(out + t * W.rows + i, four, sizeof four);
      }
    }
  }
  for (; i < i1; ++i) {
    const std::uint8_t* row = data + i * rb;
    for (std::size_t t = 0; t < n_tok; ++t) {
      out[t * W.rows + i] = W.type == WeightType::F32
                                ? k.dot_f32(reinterpret_cast<const float*>(row), act_f32_ + t * act_stride_, W.cols)
                                : dot(row, xq + t * nb_x * sizeof(BlockQ8_0), xs + t * nb_x, nb);
    }
  }
}

// Chunks of whole 32-row groups (multiples of 4 for the four-row kernels, of 8 so that no two chunks write one
// cache line of an output), about 4 per thread: a late thread's range is taken over a quarter at a time, and each
// claim has a cost (2 threads, quiet VM: 4 per thread 223, 16 per thread 220, 1 per thread 227 tok/s; with a CPU
// hog beside: 130, 134, 126).
std::size_t CpuEngine::chunk_rows(std::size_t total) const {
  const std::size_t per_thread = (total + 4 * static_cast<std::size_t>(n_threads_) - 1) / (4 * n_threads_);
  return std::max<std::size_t>(32, (per_thread + 31) / 32 * 32);
}

// The concatenated rows of the segments are split into chunks over threads.
void CpuEngine::matvec_job(const WeightView* const* w, float* const* y, std::size_t n_seg, std::size_t n_tok) {
  std::size_t total = 0;
  for (std::size_t s = 0; s < n_seg; ++s) total += w[s]->rows;
  const std::size_t rows = chunk_rows(total);
  auto fn = [&](std::size_t chunk, int) {
    std::size_t r = chunk * rows;
    const std::size_t end = std::min(total, r + rows);
    std::size_t base = 0;
    for (std::size_t s = 0; s < n_seg && r < end; ++s) {
      const std::size_t seg_end = base + w[s]->rows;
      if (r < seg_end) {
        const std::size_t stop = std::min(end, seg_end);
        matvec_rows(*w[s], y[s], r - base, stop - base, n_tok);
        r = stop;
      }
      base = seg_end;
    }
  };
  pool_->run((total + rows - 1) / rows, fn);
}

// The FFN's gate and up matvecs and what follows them, as one job: a chunk computes gate and up rows [r0, r1)
// (whole 32-row groups) for every token, then silu(gate) * up on those rows (into gate_) and, when `down` is
// quantized (its cols = n_ff are then a multiple of 32), their Q8 blocks (into ffn_q_/ffn_s_: act_q_ is still
// being read by other chunks). Before, the calling thread did the SiLU and quantization of n_ff values per token
// alone between two jobs while the workers waited. Afterwards the FFN hidden state is the current activation.
void CpuEngine::ffn_gate_up_job(const LayerView& L, std::size_t n_tok) {
  const PathKernels k = kernels_for(path_);
  const std::size_t F = model_.config.n_ff;
  const bool quantize = L.down.type != WeightType::F32;
  const std::size_t nb_f = F / kQuantBlockElems;
  const std::size_t rows = chunk_rows(F);
  auto fn = [&](std::size_t chunk, int) {
    const std::size_t r0 = chunk * rows, r1 = std::min(F, r0 + rows);
    matvec_rows(L.gate, gate_.data(), r0, r1, n_tok);
    matvec_rows(L.up, up_.data(), r0, r1, n_tok);
    for (std::size_t t = 0; t < n_tok; ++t) {
      float* g = gate_.data() + t * F;
      const float* u = up_.data() + t * F;
      for (std::size_t i = r0; i < r1; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      if (quantize) {
        const std::size_t b0 = t * nb_f + r0 / kQuantBlockElems;
        k.quantize(g + r0, (r1 - r0) / kQuantBlockElems, ffn_q_.data() + b0 * sizeof(BlockQ8_0), ffn_s_.data() + b0);
      }
    }
  };
  pool_->run((F + rows - 1) / rows, fn);
  std::swap(act_q_, ffn_q_);
  std::swap(act_s_, ffn_s_);
  act_f32_ = gate_.data();
  act_stride_ = F;
}

void CpuEngine::rope(float* x, std::size_t n_heads, const float* cos_t, const float* sin_t) const {
  const EngineConfig& c = model_.config;
  const std::size_t half = c.n_rot / 2;
  for (std::size_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * c.head_dim;
    for (std::size_t i = 0; i < half; ++i) {
      const std::size_t i0 = c.rope_neox ? i : 2 * i;
      const std::size_t i1 = c.rope_neox ? i + half : 2 * i + 1;
      const float x0 = xh[i0], x1 = xh[i1];
      xh[i0] = x0 * cos_t[i] - x1 * sin_t[i];
      xh[i1] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

// (token, head) pairs split over threads; token t (position first_pos + t) attends to positions <= its own.
// q_ holds f16-rounded values; the cache holds f16-rounded values.
void CpuEngine::attention(std::size_t layer, std::size_t first_pos, std::size_t n_tok) {
  const EngineConfig& c = model_.config;
  const PathKernels k = kernels_for(path_);
  const std::size_t D = c.head_dim, S = c.max_seq, H = c.n_head, group = c.n_head / c.n_head_kv;
  const std::size_t qd = H * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float* kc = k_cache_.data() + layer * c.n_head_kv * S * D;
  const float* vc = v_cache_.data() + layer * c.n_head_kv * D * S;
  const SimdPath path = path_;
  auto fn = [&](std::size_t job, int tid) {
    float* s = scores_.data() + static_cast<std::size_t>(tid) * S;
    {
      const std::size_t t = job / H, h = job % H, g = h / group, n_kv = first_pos + t + 1;
      const float* qh = q_.data() + t * qd + h * D;
      float mx = -std::numeric_limits<float>::infinity();
      for (std::size_t j = 0; j < n_kv; ++j) {
        s[j] = k.dot_f32(qh, kc + (g * S + j) * D, D) * scale;
        mx = std::max(mx, s[j]);
      }
      // ggml_vec_soft_max_f32: exp(x - max), sum in double, then multiply by 1/sum.
      double sum = 0.0;
      for (std::size_t j = 0; j < n_kv; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += static_cast<double>(s[j]);
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (std::size_t j = 0; j < n_kv; ++j) s[j] *= inv;
      round_to_f16(s, n_kv, path);
      float* oh = o_.data() + t * qd + h * D;
      for (std::size_t d = 0; d < D; ++d) oh[d] = k.dot_f32(vc + (g * D + d) * S, s, n_kv);
    }
  };
  pool_->run(n_tok * H, fn);
}

void CpuEngine::check_tokens(const long long* tokens, std::size_t n) const {
  check_decode_tokens(model_.config, n_past_, tokens, n);
}

long long CpuEngine::step(long long token, float* logits, bool want_argmax) {
  check_tokens(&token, 1);
  return forward(&token, 1, logits, logits != nullptr || want_argmax);
}

long long CpuEngine::prefill(const long long* tokens, std::size_t n, float* logits) {
  if (n == 0) throw std::invalid_argument("prefill: no tokens");
  check_tokens(tokens, n);
  long long best = -1;
  for (std::size_t i = 0; i < n; i += kMaxBatch) {
    const std::size_t m = std::min(kMaxBatch, n - i);
    const bool last = i + m == n;
    best = forward(tokens + i, m, last ? logits : nullptr, last);
  }
  return best;
}

long long CpuEngine::forward(const long long* tokens, std::size_t n_tok, float* logits, bool want_head) {
  const EngineConfig& c = model_.config;
  const PathKernels k = kernels_for(path_);
  const std::size_t p0 = n_past_;
  const std::size_t E = c.n_embd, D = c.head_dim, S = c.max_seq, G = c.n_head_kv;
  const std::size_t qd = c.n_head * D, kvd = G * D, half = c.n_rot / 2;

  for (std::size_t t = 0; t < n_tok; ++t) {
    // Embedding row (exact dequantization, as ggml_get_rows).
    const WeightView& T = model_.tok_embd;
    const auto* row = static_cast<const std::uint8_t*>(T.data) + static_cast<std::size_t>(tokens[t]) * row_bytes(T);
    float* xt = x_.data() + t * E;
    switch (T.type) {
      case WeightType::F32: std::memcpy(xt, row, E * sizeof(float)); break;
      case WeightType::Q4_0: k.deq_q4_0(row, xt, E / kQuantBlockElems); break;
      case WeightType::Q4_1: k.deq_q4_1(row, xt, E / kQuantBlockElems); break;
      case WeightType::Q8_0: k.deq_q8_0(row, xt, E / kQuantBlockElems); break;
    }
    // RoPE table for this position: ggml_rope_cache_init's float recurrence.
    const float theta_scale = std::pow(c.rope_base, -2.0f / static_cast<float>(c.n_rot));
    float theta = static_cast<float>(p0 + t);
    for (std::size_t i = 0; i < half; ++i) {
      const float a = model_.rope_freqs ? theta / model_.rope_freqs[i] : theta;
      rope_cos_[t * half + i] = std::cos(a);
      rope_sin_[t * half + i] = std::sin(a);
      theta *= theta_scale;
    }
  }

  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const LayerView& L = model_.layers[l];
    for (std::size_t t = 0; t < n_tok; ++t) rmsnorm_ggml(&x_[t * E], L.attn_norm, &h_[t * E], E, c.rms_eps);
    quantize_act(h_.data(), E, n_tok);
    {
      const WeightView* w[3] = {&L.wq, &L.wk, &L.wv};
      float* y[3] = {q_.data(), k_.data(), v_.data()};
      matvec_job(w, y, 3, n_tok);
    }
    float* kc = k_cache_.data() + l * G * S * D;
    float* vc = v_cache_.data() + l * G * D * S;
    for (std::size_t t = 0; t < n_tok; ++t) {
      float* qt = &q_[t * qd];
      float* kt = &k_[t * kvd];
      float* vt = &v_[t * kvd];
      if (L.bq) for (std::size_t i = 0; i < qd; ++i) qt[i] += L.bq[i];
      if (L.bk) for (std::size_t i = 0; i < kvd; ++i) kt[i] += L.bk[i];
      if (L.bv) for (std::size_t i = 0; i < kvd; ++i) vt[i] += L.bv[i];
      rope(qt, c.n_head, &rope_cos_[t * half], &rope_sin_[t * half]);
      rope(kt, G, &rope_cos_[t * half], &rope_sin_[t * half]);
      round_to_f16(qt, qd, path_);
      round_to_f16(kt, kvd, path_);
      round_to_f16(vt, kvd, path_);
      const std::size_t pos = p0 + t;
      for (std::size_t g = 0; g < G; ++g) {
        std::memcpy(kc + (g * S + pos) * D, kt + g * D, D * sizeof(float));
        for (std::size_t d = 0; d < D; ++d) vc[(g * D + d) * S + pos] = vt[g * D + d];
      }
    }
    attention(l, p0, n_tok);
    quantize_act(o_.data(), qd, n_tok);
    {
      const WeightView* w[1] = {&L.wo};
      float* y[1] = {tmp_.data()};
      matvec_job(w, y, 1, n_tok);
    }
    for (std::size_t i = 0; i < n_tok * E; ++i) x_[i] += tmp_[i];
    for (std::size_t t = 0; t < n_tok; ++t) rmsnorm_ggml(&x_[t * E], L.ffn_norm, &h_[t * E], E, c.rms_eps);
    quantize_act(h_.data(), E, n_tok);
    ffn_gate_up_job(L, n_tok);
    {
      const WeightView* w[1] = {&L.down};
      float* y[1] = {tmp_.data()};
      matvec_job(w, y, 1, n_tok);
    }
    for (std::size_t i = 0; i < n_tok * E; ++i) x_[i] += tmp_[i];
  }
  n_past_ = p0 + n_tok;
  if (!want_head) return -1;

  // LM head for the last token only.
  rmsnorm_ggml(&x_[(n_tok - 1) * E], model_.output_norm, h_.data(), E, c.rms_eps);
  quantize_act(h_.data(), E, 1);
  float* out = logits != nullptr ? logits : logits_.data();
  {
    const WeightView* w[1] = {&model_.output};
    float* y[1] = {out};
    matvec_job(w, y, 1, 1);
  }
  // First maximum; a NaN counts as the maximum (as numpy.argmax) so that broken logits are visible.
  std::size_t best = 0;
  for (std::size_t i = 0; i < c.n_vocab; ++i) {
    if (std::isnan(out[i])) return static_cast<long long>(i);
    if (out[i] > out[best]) best = i;
  }
  return static_cast<long long>(best);
}

}  // namespace edgellm::cpu
