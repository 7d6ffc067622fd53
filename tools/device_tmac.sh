#!/usr/bin/env bash
# Device call for the T-MAC GEMVs (issue 4): build, tests/test_tmac_gpu.py (+ compute-sanitizer memcheck and
# racecheck on the stream-variant tests), then tools/sweep_tmac.py (mma vs stream at several K-slice caps) into
# $OUT. With KERNELS=1 also the kernels suite (bench/run.py --suite kernels): report and results into $OUT/bench.
# Usage on the device, from the repo root: bash tools/device_tmac.sh
# Env: SKIP_TESTS, SANITIZE, SKIP_SWEEP, SWEEP_ARGS, KERNELS, EDGELLM_GIT_COMMIT (recorded in results).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 400 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" ${TEST_EXTRA:-} -q -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest_tmac.log" | tail -8
fi
[ -n "${SANITIZE:-}" ] && device_sanitize tests/test_tmac_gpu.py "${SANITIZE_K:-stream and (ragged or model_shapes or odd_k)}"
[ -z "${SKIP_SWEEP:-}" ] && timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/tools/sweep_tmac.py" --out "$OUT/tmac_sweep.json" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/tmac_sweep.log"
if [ -n "${KERNELS:-}" ]; then device_kernels_suite; fi
