// Kernels of the decode engine (engine.cpp) that the generic quant/basic kernels do not provide.
//
// Four-row quantized dot products:
//   out[j] = W[row j] . x   for j < 4, rows `row_bytes` apart, x given as Q8_0 blocks xq (+ per-block xs, the
//   Q8_1 sums used by Q4_1), nb blocks per row.
// Each out[j] is bit-identical to the single-row kernel of quant_impl.h on the same SIMD path (the same
// operations in the same order per row); the point is four independent accumulator chains, which hide the FMA
// latency that bounds the single-row loop (one block per FMA latency), one activation load per block for four
// rows, and (AVX2) one f16 conversion of the four rows' block scales. Only the AVX2 path has its own code; other
// paths call the single-row kernels four times.
//
// Activation quantization (ggml's SIMD quantize_row_q8_1; AVX2 and NEON agree): per block of 32 floats,
// d = amax/127 (stored f16), q = round-to-nearest-even(x * 127/amax) (0 when amax = 0), s = f16(d * sum q) as a
// float. q receives nb BlockQ8_0 (the Q8_0 activation of Q4_0/Q8_0 weights is the same blocks without s).
// The AVX2 version gives the same bytes and floats as the scalar one for finite inputs (checked by
// tests/cpp/test_engine.cpp); it exists because the scalar loop ran on the calling thread between matvecs while
// the workers waited (~2.5% of a decode step's samples).
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellm::cpu {

using Dot4Fn = void (*)(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                        std::size_t nb, float* out);
using QuantizeActFn = void (*)(const float* x, std::size_t nb, std::uint8_t* q, float* s);

void quantize_act_q8_scalar(const float* x, std::size_t nb, std::uint8_t* q, float* s);

namespace avx2 {
void dot4_q4_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
void dot4_q4_1_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
void dot4_q8_0_q8_0(const std::uint8_t* w, std::size_t row_bytes, const std::uint8_t* xq, const float* xs,
                    std::size_t nb, float* out);
void quantize_act_q8(const float* x, std::size_t nb, std::uint8_t* q, float* s);
}  // namespace avx2

}  // namespace edgellm::cpu
