// SIMD path selection for the CPU kernels.
//
// Every CPU kernel family has a scalar reference path and, where the build targets it, an AVX2+FMA path
// (x86-64, compiled in separate translation units with -mavx2 -mfma and used only when the running CPU
// reports both features) and a NEON path (aarch64, where NEON is architectural). Callers name the path
// explicitly; "auto" picks the best one this build and CPU support. There is no process-wide switch.
#pragma once

#include <string>
#include <vector>

namespace edgellm {

enum class SimdPath { Scalar, Avx2, Neon };

const char* simd_path_name(SimdPath path);

// Paths compiled into this binary, scalar first.
std::vector<SimdPath> compiled_simd_paths();

// True when the path is compiled in and the running CPU can execute it.
bool simd_path_supported(SimdPath path);

// The fastest supported path (AVX2 > NEON > scalar).
SimdPath best_simd_path();

// "auto", "scalar", "avx2" or "neon" -> path. Throws std::invalid_argument naming the valid choices when the
// name is unknown or the path is not supported on this build/CPU.
SimdPath parse_simd_path(const std::string& name);

}  // namespace edgellm
