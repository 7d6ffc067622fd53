// fa2_decode tensor-core kernel at long contexts, outside the package (fourteenth session; not part of it): links
// src/cuda's fa2_decode*.cu, device.cu, device_buffer.cu with this main, so that variants of the kernel header can
// be built in ~20 s each on the device (fa2_variants.sh). Per case: random fp16 q/K/V (uniform in [-1, 1], q
// scaled by 4 so that the softmax is not flat), one launch checked against a float64 reference of every head,
// then CUDA events around each launch (a 512 MB buffer written between launches: L2 flushed), median of 30.
// Usage: fa2_harness [variant-name]  (prints one JSON object per line)
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda_check.h"
#include "fa2_decode.h"

using namespace edgellm::cuda;

struct Case {
  const char* model;
  int hq, hkv, d, len;
  std::vector<int> splits;  // 0: the default rule
};

int main(int argc, char** argv) {
  const char* variant = argc > 1 ? argv[1] : "base";
  const std::vector<Case> cases = {
      {"Llama-3.1-8B", 32, 8, 128, 65536, {0, 8, 32}},
      {"Llama-3.1-8B", 32, 8, 128, 16384, {0}},
      {"Qwen2.5-1.5B", 12, 2, 128, 65536, {0, 32}},
      {"SmolLM2-135M", 9, 3, 64, 65536, {0}},
      {"Qwen2.5-0.5B", 14, 2, 64, 65536, {0}},
  };
  const size_t flush_bytes = 512u << 20;
  void* flush = nullptr;
  EDGELLM_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t e0, e1;
  EDGELLM_CUDA_CHECK(cudaEventCreate(&e0));
  EDGELLM_CUDA_CHECK(cudaEventCreate(&e1));
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (const Case& c : cases) {
    const size_t q_n = static_cast<size_t>(c.hq) * c.d, kv_n = static_cast<size_t>(c.hkv) * c.len * c.d;
    std::vector<__half> q(q_n), k(kv_n), v(kv_n);
    for (auto& x : q) x = __float2half(4.0f * uni(rng));
    for (auto& x : k) x = __float2half(uni(rng));
    for (auto& x : v) x = __float2half(uni(rng));
    // float64 reference, every head
    std::vector<double> ref(q_n);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    const int group = c.hq / c.hkv;
    std::vector<double> s(c.len);
    for (int h = 0; h < c.hq; ++h) {
      const __half* kh = k.data() + static_cast<size_t>(h / group) * c.len * c.d;
      const __half* vh = v.data() + static_cast<size_t>(h / group) * c.len * c.d;
      double mx = -1e300;
      for (int j = 0; j < c.len; ++j) {
        double acc = 0;
        for (int e = 0; e < c.d; ++e) acc += double(__half2float(q[h * c.d + e])) * __half2float(kh[size_t(j) * c.d + e]);
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      std::vector<double> o(c.d, 0.0);
      for (int j = 0; j < c.len; ++j) {
        const double p = std::exp(s[j] - mx);
        sum += p;
        for (int e = 0; e < c.d; ++e) o[e] += p * __half2float(vh[size_t(j) * c.d + e]);
      }
      for (int e = 0; e < c.d; ++e) ref[h * c.d + e] = o[e] / sum;
    }
    __half *dq, *dk, *dv, *dout;
    int* dlen;
    EDGELLM_CUDA_CHECK(cudaMalloc(&dq, q_n * 2));
    EDGELLM_CUDA_CHECK(cudaMalloc(&dk, kv_n * 2));
    EDGELLM_CUDA_CHECK(cudaMalloc(&dv, kv_n * 2));
    EDGELLM_CUDA_CHECK(cudaMalloc(&dout, q_n * 2));
    EDGELLM_CUDA_CHECK(cudaMalloc(&dlen, 4));
    EDGELLM_CUDA_CHECK(cudaMemcpy(dq, q.data(), q_n * 2, cudaMemcpyHostToDevice));
    EDGELLM_CUDA_CHECK(cudaMemcpy(dk, k.data(), kv_n * 2, cudaMemcpyHostToDevice));
    EDGELLM_CUDA_CHECK(cudaMemcpy(dv, v.data(), kv_n * 2, cudaMemcpyHostToDevice));
    EDGELLM_CUDA_CHECK(cudaMemcpy(dlen, &c.len, 4, cudaMemcpyHostToDevice));
    Fa2DecodeShape shape;
    shape.batch = 1;
    shape.q_heads = c.hq;
    shape.kv_heads = c.hkv;
    shape.head_dim = c.d;
    shape.max_seq = c.len;
    shape.dtype = DType::F16;
    for (int splits : c.splits) {
      Fa2DecodeOp op(shape, reinterpret_cast<std::uintptr_t>(dq), reinterpret_cast<std::uintptr_t>(dk),
                     reinterpret_cast<std::uintptr_t>(dv), reinterpret_cast<std::uintptr_t>(dlen),
                     reinterpret_cast<std::uintptr_t>(dout), static_cast<float>(scale), c.len, splits, 0,
                     Fa2Variant::TensorCore);
      EDGELLM_CUDA_CHECK(cudaMemset(dout, 0xff, q_n * 2));  // NaN poison
      op.launch(nullptr);
      EDGELLM_CUDA_CHECK(cudaGetLastError());
      EDGELLM_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<__half> out(q_n);
      EDGELLM_CUDA_CHECK(cudaMemcpy(out.data(), dout, q_n * 2, cudaMemcpyDeviceToHost));
      double max_err = 0, max_ref = 0;
      for (size_t i = 0; i < q_n; ++i) {
        const double o = __half2float(out[i]);
        max_err = std::isfinite(o) ? std::max(max_err, std::fabs(o - ref[i])) : INFINITY;
        max_ref = std::max(max_ref, std::fabs(ref[i]));
      }
      std::vector<float> ms;
      for (int it = 0; it < 33; ++it) {
        EDGELLM_CUDA_CHECK(cudaMemsetAsync(flush, it & 0xff, flush_bytes));
        EDGELLM_CUDA_CHECK(cudaEventRecord(e0));
        op.launch(nullptr);
        EDGELLM_CUDA_CHECK(cudaEventRecord(e1));
        EDGELLM_CUDA_CHECK(cudaEventSynchronize(e1));
        float t = 0;
        EDGELLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        if (it >= 3) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double bytes = 2.0 * kv_n * 2;
      std::printf("{\"variant\": \"%s\", \"model\": \"%s\", \"keys\": %d, \"splits\": %d, \"median_us\": %.2f, "
                  "\"min_us\": %.2f, \"GBps\": %.0f, \"max_abs_err\": %.3g, \"max_abs_ref\": %.3g}\n",
                  variant, c.model, c.len, op.num_splits(), 1e3 * ms[ms.size() / 2], 1e3 * ms.front(),
                  bytes / (1e3 * ms[ms.size() / 2]) / 1e3, max_err, max_ref);
      std::fflush(stdout);
    }
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dout);
    cudaFree(dlen);
  }
  return 0;
}
