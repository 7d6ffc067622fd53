#!/usr/bin/env bash
# Device call for the GEMV / fused RMSNorm + GEMV family (issue 4): build, tests/test_fused_gpu.py and the GPU
# engine tests (+ compute-sanitizer memcheck and racecheck on the "shared" fp16 tests with SANITIZE=1), then
# tools/sweep_variants.py (every variant of the family, batch 1, fp16; SWEEP_ARGS, e.g. --no-tmac) into
# $OUT/gemv_variants_sweep.json and .log. With KERNELS=1 also the kernels suite into $OUT/bench.
# Usage on the device, from the repo root: bash tools/device_gemv.sh     Carried: .whl (gguf, for the engine tests).
# Env: SKIP_TESTS, TEST_EXTRA, SANITIZE (+ SANITIZE_K), SKIP_SWEEP, SWEEP_ARGS, SWEEP_TIMEOUT, KERNELS.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_kernel_call pytest_gemv.log tests/test_fused_gpu.py "shared and float16" tools/sweep_variants.py \
  gemv_variants_sweep.json tests/test_fused_gpu.py tests/test_engine_gpu.py
