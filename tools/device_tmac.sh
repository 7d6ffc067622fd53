#!/usr/bin/env bash
# Device call for the T-MAC GEMVs (issue 4): build, tests/test_tmac_gpu.py (+ compute-sanitizer memcheck and
# racecheck on the stream-variant tests), then tools/sweep_tmac.py (mma vs stream at several K-slice caps) into
# $OUT. With KERNELS=1 also the kernels suite (bench/run.py --suite kernels): report and results into $OUT/bench.
# Usage on the device, from the repo root: bash tools/device_tmac.sh
# Env: SKIP_TESTS, SANITIZE, SKIP_SWEEP, SWEEP_ARGS, KERNELS, EDGELLM_GIT_COMMIT (recorded in results).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
rm -rf "$ROOT/build"
t0=$(date +%s)
python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
cd /tmp
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 400 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" ${TEST_EXTRA:-} -q -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest_tmac.log" | tail -8
fi
if [ -n "${SANITIZE:-}" ]; then
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" \
      -q -p no:cacheprovider -k "${SANITIZE_K:-stream and (ragged or model_shapes or odd_k)}" > "$OUT/$tool.log" 2>&1
    echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/$tool.log" | tail -3
  done
fi
[ -z "${SKIP_SWEEP:-}" ] && timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/tools/sweep_tmac.py" --out "$OUT/tmac_sweep.json" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/tmac_sweep.log"
if [ -n "${KERNELS:-}" ]; then
  rm -rf /tmp/bench && python3 "$ROOT/bench/run.py" --suite kernels --out /tmp/bench > "$OUT/bench.log" 2>&1
  echo "kernels suite exit $?"; run_dir=$(ls -d /tmp/bench/*/ | head -1); mkdir -p "$OUT/bench"
  cp "$run_dir/report.md" "$run_dir/results.json" "$OUT/bench/"
  grep -E "\| (tmac|fused|fa2)" "$OUT/bench/report.md" | grep -E "PASS|FAIL" | cut -c1-200
fi
