#!/usr/bin/env bash
# One call on the lent GPU machine: build for sm_90, run the test suite (GPU tests included), compute-sanitizer
# memcheck and racecheck on the GPU tests, then the GPU benchmark suite; logs and results are packed into
# $OUT/device_run.tar.gz (the device tool returns at most 8 files).
#   usage (on the device): bash tools/device_run.sh [tests] [sanitize] [bench]
#   env: PYTEST_TARGETS (test files, default the whole tests/ folder), SANITIZE_TESTS / SANITIZE_K (what runs under the sanitizers),
#        BENCH_ARGS (extra bench/run.py arguments, e.g. --quick), EDGELLM_GIT_COMMIT (recorded in results)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/run"
LOG="$OUT/run"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
trap 'tar -C "$OUT" -czf "$OUT/device_run.tar.gz" run && rm -rf "$LOG"' EXIT
# A fresh CMake configure every time: a warm machine may keep the build folder of a call configured otherwise.
rm -rf "$ROOT/build"
python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$LOG/build.log" 2>&1 || { tail -50 "$LOG/build.log"; exit 1; }
python3 -c "import edgellm_ext, json; print(json.dumps(edgellm_ext.build_info()))"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
cd /tmp
for step in ${*:-tests sanitize bench}; do
  case $step in
    tests)
      python3 -m pytest ${PYTEST_TARGETS:-$ROOT/tests} -q -p no:cacheprovider > "$LOG/pytest.log" 2>&1
      echo "pytest exit $?"; tail -15 "$LOG/pytest.log" ;;
    sanitize)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest ${SANITIZE_TESTS:-$ROOT/tests/test_fa2_decode.py} \
          -q -p no:cacheprovider -k "${SANITIZE_K:-not long_context}" > "$LOG/sanitize_$tool.log" 2>&1
        echo "compute-sanitizer $tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$LOG/sanitize_$tool.log" | tail -3
      done ;;
    bench)
      python3 "$ROOT/bench/run.py" --suite kernels --out "$LOG/bench" ${BENCH_ARGS:-} > "$LOG/bench.log" 2>&1
      echo "bench exit $?"; tail -40 "$LOG/bench.log" ;;
  esac
done
