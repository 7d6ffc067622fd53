// KV cache and arena in C++ (so that they also run under the sanitizer build and qemu-aarch64): contents after
// appends on every path, the full-layer error, every binary16 value through f16 -> f32 -> f16 (exact), rounding
// of float32 values halfway between binary16 neighbours (nearest-even), every SIMD conversion path bit-identical
// to the scalar one, and the arena's error paths.
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "arena.h"
#include "kv_cache.h"
#include "test_main.h"

namespace {

int fail(const char* what) {
  std::printf("FAIL %s\n", what);
  return 1;
}

int test_cache() {
  int failures = 0;
  for (edgellm::SimdPath path : edgellm_test::runnable_paths())
  for (auto dt : {edgellm::KvDType::F32, edgellm::KvDType::F16}) {
    edgellm::KvCache c(3, 2, 5, 7, dt, path);
    std::vector<float> k(14), v(14), out(5 * 7);
    for (int pos = 0; pos < 5; ++pos) {
      for (std::size_t l = 0; l < 3; ++l) {
        // values exactly representable in binary16, so both dtypes must read back exactly
        for (int i = 0; i < 14; ++i) k[i] = pos + i * 0.5f, v[i] = -k[i] - float(l);
        c.append(l, k.data(), v.data());
      }
    }
    try {
      c.append(0, k.data(), v.data());
      failures += fail("append to a full layer did not throw");
    } catch (const edgellm::KvCacheFull&) {
    }
    c.read_keys_f32(2, 1, 5, out.data());
    for (int p = 0; p < 5; ++p)
      for (int d = 0; d < 7; ++d)
        if (out[p * 7 + d] != p + (7 + d) * 0.5f) failures += fail("read_keys_f32 content");
    c.read_values_f32(1, 0, 3, out.data());
    for (int p = 0; p < 3; ++p)
      for (int d = 0; d < 7; ++d)
        if (out[p * 7 + d] != -(p + d * 0.5f) - 1.0f) failures += fail("read_values_f32 content");
    try {
      c.read_keys_f32(2, 2, 1, out.data());
      failures += fail("read of head out of range did not throw");
    } catch (const std::out_of_range&) {
    }
    c.reset();
    if (c.length(0) != 0 || c.length(2) != 0) failures += fail("reset");
  }
  return failures;
}

int test_f16() {
  int failures = 0;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = edgellm::f16_to_f32(static_cast<std::uint16_t>(h));
    if (f != f) {  // NaN stays NaN
      const std::uint16_t back = edgellm::f32_to_f16(f);
      if ((back & 0x7C00u) != 0x7C00u || (back & 0x3FFu) == 0) failures += fail("f16 NaN round trip");
      continue;
    }
    if (edgellm::f32_to_f16(f) != h) {
      std::printf("FAIL f16 round trip of 0x%04X\n", h);
      ++failures;
    }
  }
  // Halfway cases: 1 + 2^-11 lies between 1 and 1 + 2^-10 -> even (1.0); 1 + 3 * 2^-11 -> 1 + 2^-9 (even).
  if (edgellm::f32_to_f16(1.0f + 0x1p-11f) != 0x3C00u) failures += fail("f16 tie to even (down)");
  if (edgellm::f32_to_f16(1.0f + 3 * 0x1p-11f) != 0x3C02u) failures += fail("f16 tie to even (up)");
  if (edgellm::f32_to_f16(65520.0f) != 0x7C00u) failures += fail("65520 -> inf");
  if (edgellm::f32_to_f16(65519.0f) != 0x7BFFu) failures += fail("65519 -> 65504");
  if (edgellm::f32_to_f16(0x1p-25f) != 0x0000u) failures += fail("2^-25 -> 0 (tie to even)");
  if (edgellm::f32_to_f16(3 * 0x1p-26f) != 0x0001u) failures += fail("3*2^-26 -> smallest subnormal");
  return failures;
}

// Every runnable path converts every binary16 value to float32 and back, and random float32 values (all
// exponents, via random bit patterns; NaNs excluded) to binary16, with the same bits as the scalar path.
int test_f16_paths() {
  int failures = 0;
  std::vector<std::uint16_t> all(65536 + 5);  // +5: a tail that is not a multiple of the vector width
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i * 40503u);
  std::vector<float> ref_f(all.size()), got_f(all.size());
  edgellm::f16_to_f32_row(all.data(), ref_f.data(), all.size(), edgellm::SimdPath::Scalar);
  std::mt19937 gen(42);
  std::vector<float> rnd(100003);
  for (float& f : rnd) {
    do {
      const std::uint32_t bits = gen();
      std::memcpy(&f, &bits, 4);
    } while (f != f);
  }
  std::vector<std::uint16_t> ref_h(rnd.size()), got_h(rnd.size());
  edgellm::f32_to_f16_row(rnd.data(), ref_h.data(), rnd.size(), edgellm::SimdPath::Scalar);
  for (edgellm::SimdPath path : edgellm_test::runnable_paths()) {
    edgellm::f16_to_f32_row(all.data(), got_f.data(), all.size(), path);
    for (std::size_t i = 0; i < all.size(); ++i) {
      const bool both_nan = ref_f[i] != ref_f[i] && got_f[i] != got_f[i];
      if (!both_nan && std::memcmp(&ref_f[i], &got_f[i], 4) != 0) {
        std::printf("FAIL f16_to_f32_row [%s] 0x%04X\n", edgellm::simd_path_name(path), all[i]);
        ++failures;
      }
    }
    edgellm::f32_to_f16_row(rnd.data(), got_h.data(), rnd.size(), path);
    for (std::size_t i = 0; i < rnd.size(); ++i) {
      if (ref_h[i] != got_h[i]) {
        std::printf("FAIL f32_to_f16_row [%s] %.9g: 0x%04X vs scalar 0x%04X\n", edgellm::simd_path_name(path),
                    rnd[i], got_h[i], ref_h[i]);
        if (++failures > 20) return failures;
      }
    }
  }
  return failures;
}

int test_arena() {
  int failures = 0;
  edgellm::Arena a(100, 64);
  a.allocate(60, 1);
  try {
    a.allocate(64, 64);
    failures += fail("arena overflow did not throw");
  } catch (const edgellm::ArenaExhausted&) {
  }
  if (a.used_bytes() != 60) failures += fail("failed allocation changed the arena");
  try {
    a.allocate(1, 3);
    failures += fail("alignment 3 accepted");
  } catch (const std::invalid_argument&) {
  }
  for (std::size_t huge : {SIZE_MAX, SIZE_MAX - 59}) {
    try {
      a.allocate(huge, 1);
      failures += fail("huge allocation accepted");
    } catch (const edgellm::ArenaExhausted&) {
    }
  }
  try {
    a.allocate(1, std::size_t(1) << 63);
    failures += fail("huge alignment accepted");
  } catch (const edgellm::ArenaExhausted&) {
  }
  std::memset(a.allocate(40, 1), 0, 40);  // exactly fills the block (the sanitizer build checks the bounds)
  if (a.used_bytes() != 100 || a.high_water_bytes() != 100) failures += fail("arena accounting");
  a.reset();
  if (a.used_bytes() != 0 || a.high_water_bytes() != 100) failures += fail("arena reset");
  return failures;
}

}  // namespace

int test_kv_cache() { return test_cache() + test_f16() + test_f16_paths() + test_arena(); }
