// The CPU decode engine (engine.h) and its four-row kernels (engine_kernels.h):
//  - avx2::dot4_* are bit-identical to the single-row quant kernels they replace (memcmp of the floats), and the
//    AVX2 activation quantization to the scalar one;
//  - on every runnable path, a tiny random model gives bit-identical logits for 1 and 3 threads, and for
//    batched prefill vs token-by-token steps (per-token arithmetic never depends on the split or the batch);
//  - the scalar and SIMD paths agree within a tolerance (different float summation orders);
//  - a full cache raises ContextFull and changes nothing.
// The numerics against an independent float64 reference and against llama.cpp are in tests/test_engine.py.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine.h"
#include "engine_kernels.h"
#include "quant.h"
#include "quant_impl.h"
#include "test_main.h"

using edgellm::SimdPath;
using namespace edgellm::cpu;

namespace {

std::vector<std::uint8_t> quantized(QuantType t, std::size_t rows, std::size_t cols, std::uint32_t seed) {
  const std::vector<float> x = edgellm_test::random_normal(rows * cols, seed);
  std::vector<std::uint8_t> out(rows * cols / 32 * quant_block_bytes(t));
  quantize(t, x.data(), out.data(), rows, cols / 32);
  return out;
}

#if defined(EDGELLM_HAVE_AVX2)
int test_dot4() {
  if (!edgellm::simd_path_supported(SimdPath::Avx2)) return 0;
  int failures = 0;
  for (QuantType t : {QuantType::Q4_0, QuantType::Q4_1, QuantType::Q8_0}) {
    for (std::size_t nb : {1u, 7u, 18u, 48u}) {
      const std::size_t cols = nb * 32;
      const auto w = quantized(t, 4, cols, 11 + static_cast<std::uint32_t>(nb));
      const auto xq = quantized(QuantType::Q8_0, 1, cols, 97 + static_cast<std::uint32_t>(nb));
      const std::vector<float> xs = edgellm_test::random_normal(nb, 5);
      const std::size_t rb = nb * quant_block_bytes(t);
      float four[4];
      float one[4];
      Dot4Fn dot4 = t == QuantType::Q4_0 ? avx2::dot4_q4_0_q8_0
                    : t == QuantType::Q4_1 ? avx2::dot4_q4_1_q8_0 : avx2::dot4_q8_0_q8_0;
      auto dot = t == QuantType::Q4_0 ? avx2::dot_q4_0_q8_0
                 : t == QuantType::Q4_1 ? avx2::dot_q4_1_q8_0 : avx2::dot_q8_0_q8_0;
      dot4(w.data(), rb, xq.data(), xs.data(), nb, four);
      for (int j = 0; j < 4; ++j) one[j] = dot(w.data() + j * rb, xq.data(), xs.data(), nb);
      if (std::memcmp(four, one, sizeof four) != 0) {
        std::printf("FAIL dot4 %s nb=%zu: not bit-identical to the single-row kernel (%.9g vs %.9g, ...)\n",
                    quant_type_name(t), nb, four[0], one[0]);
        ++failures;
      }
    }
  }
  return failures;
}

// The AVX2 activation quantization gives the scalar version's bytes and floats (blocks of random normals of
// several scales, an all-zero block, exact ties x * 127/amax = k + 0.5, and amax in a negative element).
int test_quantize_act() {
  if (!edgellm::simd_path_supported(SimdPath::Avx2)) return 0;
  const std::size_t nb = 40;
  std::vector<float> x = edgellm_test::random_normal(nb * 32, 23);
  for (std::size_t b = 0; b < nb; ++b) {
    const float scale = b % 5 == 0 ? 1e-3f : b % 5 == 1 ? 40.0f : 1.0f;
    for (std::size_t j = 0; j < 32; ++j) x[b * 32 + j] *= scale;
  }
  for (std::size_t j = 0; j < 32; ++j) x[32 + j] = 0.0f;
  for (std::size_t j = 0; j < 32; ++j) x[64 + j] = (static_cast<float>(j) - 15.5f) * 2.0f;  // amax 31 at j = 0
  for (std::size_t j = 0; j < 32; ++j) x[96 + j] = j == 0 ? 127.0f : static_cast<float>(j) - 15.5f;  // id = 1: ties
  std::vector<std::uint8_t> q1(nb * sizeof(BlockQ8_0)), q2(q1.size());
  std::vector<float> s1(nb), s2(nb);
  quantize_act_q8_scalar(x.data(), nb, q1.data(), s1.data());
  avx2::quantize_act_q8(x.data(), nb, q2.data(), s2.data());
  if (q1 != q2 || std::memcmp(s1.data(), s2.data(), nb * sizeof(float)) != 0) {
    std::printf("FAIL quantize_act_q8: AVX2 differs from scalar\n");
    return 1;
  }
  return 0;
}
#else
int test_dot4() { return 0; }
int test_quantize_act() { return 0; }
#endif

struct TinyModel {
  std::vector<std::vector<std::uint8_t>> blobs;
  std::vector<std::vector<float>> vecs;
  ModelView view;
};

// 2 layers, n_embd 64, 4 heads / 2 kv heads of 16, n_ff 96, vocab 100; Q4_1, Q4_0 and Q8_0 matrices, Qwen2-style
// biases and NeoX RoPE on odd seeds.
TinyModel make_tiny(std::uint32_t seed, std::size_t max_seq) {
  TinyModel m;
  EngineConfig& c = m.view.config;
  c.n_layer = 2; c.n_embd = 64; c.n_head = 4; c.n_head_kv = 2; c.head_dim = 16; c.n_ff = 96; c.n_vocab = 100;
  c.n_rot = 16; c.rope_base = 10000.0f; c.rope_neox = seed % 2 == 1; c.rms_eps = 1e-5f; c.max_seq = max_seq;
  m.blobs.reserve(64);
  m.vecs.reserve(64);
  auto mat = [&](QuantType t, std::size_t rows, std::size_t cols) {
    m.blobs.push_back(quantized(t, rows, cols, seed * 131 + static_cast<std::uint32_t>(m.blobs.size())));
    return WeightView{static_cast<WeightType>(static_cast<int>(t)), m.blobs.back().data(), rows, cols};
  };
  auto vec = [&](std::size_t n, float base) {
    std::vector<float> v = edgellm_test::random_normal(n, seed * 7 + static_cast<std::uint32_t>(m.vecs.size()));
    for (float& x : v) x = base + 0.1f * x;
    m.vecs.push_back(v);
    return static_cast<const float*>(m.vecs.back().data());
  };
  m.view.tok_embd = mat(QuantType::Q8_0, c.n_vocab, c.n_embd);
  m.view.output = mat(QuantType::Q4_0, c.n_vocab, c.n_embd);
  m.view.output_norm = vec(c.n_embd, 1.0f);
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    LayerView L;
    L.attn_norm = vec(c.n_embd, 1.0f);
    L.ffn_norm = vec(c.n_embd, 1.0f);
    L.wq = mat(QuantType::Q4_1, 64, 64);
    L.wk = mat(QuantType::Q4_0, 32, 64);
    L.wv = mat(QuantType::Q8_0, 32, 64);
    L.wo = mat(QuantType::Q4_1, 64, 64);
    L.gate = mat(QuantType::Q4_1, 96, 64);
    L.up = mat(QuantType::Q8_0, 96, 64);
    L.down = mat(QuantType::Q4_1, 64, 96);
    if (c.rope_neox) {
      L.bq = vec(64, 0.0f);
      L.bk = vec(32, 0.0f);
      L.bv = vec(32, 0.0f);
    }
    m.view.layers.push_back(L);
  }
  return m;
}

int test_engine_runs() {
  int failures = 0;
  const long long tokens[] = {3, 97, 14, 0, 55, 61, 2, 99, 40, 40, 7};
  const std::size_t n = sizeof tokens / sizeof tokens[0];
  for (std::uint32_t seed : {1u, 2u}) {
    TinyModel m = make_tiny(seed, 16);
    std::vector<float> scalar_logits;
    for (SimdPath path : edgellm_test::runnable_paths()) {
      CpuEngine a(m.view, 1, path), b(m.view, 3, path);
      std::vector<float> la(100), lb(100);
      for (std::size_t i = 0; i < n; ++i) a.step(tokens[i], la.data(), true);
      b.prefill(tokens, n, lb.data());
      if (la != lb) {
        std::printf("FAIL engine [%s] seed %u: 1-thread steps and 3-thread prefill differ\n",
                    edgellm::simd_path_name(path), seed);
        ++failures;
      }
      if (path == SimdPath::Scalar) {
        scalar_logits = la;
      } else {
        for (std::size_t i = 0; i < la.size(); ++i) {
          // Different summation orders, amplified by Q8 activation rounding flips: 2% of the logit scale (~3).
          failures += edgellm_test::expect_close("engine logits vs scalar", path, i, la[i], scalar_logits[i], 0.06);
        }
      }
      // Fill the cache, then a clear error that changes nothing.
      for (std::size_t i = n; i < 16; ++i) a.step(1, nullptr, false);
      const std::vector<float> before = la;
      bool threw = false;
      try {
        a.step(1, la.data(), true);
      } catch (const ContextFull&) {
        threw = true;
      }
      if (!threw || a.n_past() != 16 || la != before) {
        std::printf("FAIL engine [%s]: a step past max_seq must throw ContextFull and change nothing\n",
                    edgellm::simd_path_name(path));
        ++failures;
      }
      threw = false;
      try {
        b.step(100, nullptr, true);
      } catch (const std::out_of_range&) {
        threw = true;
      }
      if (!threw || b.n_past() != n) {
        std::printf("FAIL engine [%s]: a token id outside the vocabulary must throw\n", edgellm::simd_path_name(path));
        ++failures;
      }
    }
  }
  return failures;
}

}  // namespace

int test_engine() { return test_dot4() + test_quantize_act() + test_engine_runs(); }
