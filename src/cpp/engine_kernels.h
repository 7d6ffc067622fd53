// Four-row quantized dot products for the decode engine (engine.cpp):
//   out[j] = W[row j] . x   for j < 4, rows `row_bytes` apart, x given as Q8_0 blocks xq (+ per-block xs, the
//   Q8_1 sums used by Q4_1), nb blocks per row.
// Each out[j] is bit-identical to the single-row kernel of quant_impl.h on the same SIMD path (the same
// operations in the same order per row); the point is four independent accumulator chains, which hide the FMA
// latency that bounds the single-row loop (one block per FMA latency), one activation load per block for four
// rows, and (AVX2) one f16 conversion of the four rows' block scales. Only the AVX2 path has its own code; other paths call the single-row kernels four times.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellm::cpu {

using Dot4Fn = void (*)(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                        std::size_t nb, float* out);

namespace avx2 {
void dot4_q4_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
void dot4_q4_1_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
void dot4_q8_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
}  // namespace avx2

}  // namespace edgellm::cpu
