#!/usr/bin/env bash
# Device call for the T-MAC GEMVs (issue 4): build, tests/test_tmac_gpu.py (+ compute-sanitizer memcheck and
# racecheck on the stream-variant tests), then tools/sweep_tmac.py (mma vs stream at several K-slice caps) into
# $OUT. With KERNELS=1 also the kernels suite (bench/run.py --suite kernels): report and results into $OUT/bench.
# Usage on the device, from the repo root: bash tools/device_tmac.sh
# Env: SKIP_TESTS, SANITIZE, SKIP_SWEEP, SWEEP_ARGS, KERNELS, EDGELLM_GIT_COMMIT (recorded in results).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_kernel_call pytest_tmac.log tests/test_tmac_gpu.py "stream and (ragged or model_shapes or odd_k)" \
  tools/sweep_tmac.py tmac_sweep.json tests/test_tmac_gpu.py
