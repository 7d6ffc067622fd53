#!/usr/bin/env bash
# Device call for fa2_decode (issue 4): build, the fa2 and GPU engine tests (+ compute-sanitizer memcheck and
# racecheck on the variant tests), then tools/sweep_fa2.py (every variant beside SDPA) into $OUT.
# Usage on the device, from the repo root: bash tools/device_fa2.sh     Env: SKIP_TESTS, SANITIZE, SWEEP_ARGS.
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
  timeout 400 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest_fa2.log" | tail -15
fi
if [ -n "${SANITIZE:-}" ]; then
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" \
      -q -p no:cacheprovider -k "${SANITIZE_K:-both_variants and float16}" > "$OUT/$tool.log" 2>&1
    echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/$tool.log" | tail -3
  done
fi
timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/tools/sweep_fa2.py" --out "$OUT/fa2_sweep.json" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/fa2_sweep.log"
