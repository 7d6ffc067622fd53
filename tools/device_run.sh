#!/usr/bin/env bash
# One call on the lent GPU machine: build for sm_90, run the test suite (GPU tests included) and the sanitizers
# on the GPU tests, then the GPU benchmarks; everything lands under $OUT (logs + JSON).
#   usage (on the device): bash tools/device_run.sh [tests|sanitize|bench|all]...
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90 EDGELLM_GIT_COMMIT=${EDGELLM_GIT_COMMIT:-unknown}
what=${*:-all}
if [ ! -f /tmp/edgellm_built ] || [ "${REBUILD:-1}" = 1 ]; then
  python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
  touch /tmp/edgellm_built
fi
python3 -c "import edgellm_ext, json; print(json.dumps(edgellm_ext.build_info()))"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
cd /tmp
for step in $what; do
  case $step in
    tests|all)
      python3 -m pytest $ROOT/tests ${PYTEST_ARGS:-} -q -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -25 ;;
  esac
  case $step in
    sanitize|all)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest ${SANITIZE_TESTS:-$ROOT/tests/test_fa2_decode.py} -q -x \
          -p no:cacheprovider -k "${SANITIZE_K:-not long_context}" > "$OUT/sanitize_$tool.log" 2>&1
        echo "compute-sanitizer $tool exit $?"; tail -4 "$OUT/sanitize_$tool.log"
      done ;;
  esac
  case $step in
    bench|all) python3 $ROOT/bench/kernels_gpu.py --out "$OUT/kernels.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" ;;
  esac
done
