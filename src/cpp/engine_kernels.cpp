// Portable kernels of engine_kernels.h.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine_kernels.h"
#include "f16.h"
#include "quant.h"

namespace edgellm::cpu {

void quantize_act_q8_scalar(const float* x, std::size_t nb, std::uint8_t* q, float* s) {
  for (std::size_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kQuantBlockElems;
    float amax = 0.0f;
    for (std::size_t j = 0; j < kQuantBlockElems; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    BlockQ8_0 blk;
    blk.d = f32_to_f16(d);
    int sum = 0;
    for (std::size_t j = 0; j < kQuantBlockElems; ++j) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * id));  // default rounding mode: to nearest even
      blk.qs[j] = static_cast<std::int8_t>(v);
      sum += v;
    }
    std::memcpy(q + b * sizeof(BlockQ8_0), &blk, sizeof blk);
    s[b] = f16_to_f32(f32_to_f16(d * static_cast<float>(sum)));
  }
}

}  // namespace edgellm::cpu
