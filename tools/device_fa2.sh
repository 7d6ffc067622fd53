#!/usr/bin/env bash
# Device call for fa2_decode (issue 4): build, the fa2 and GPU engine tests (+ compute-sanitizer memcheck and
# racecheck on the variant tests), then tools/sweep_fa2.py (every variant beside SDPA) into $OUT.
# With KERNELS=1 also the kernels suite (bench/run.py --suite kernels) into $OUT/bench, and with PROBE=1 the GPU
# engine's speed probe on a random SmolLM2-shaped model (depths 0 and 1000).
# Usage on the device, from the repo root: bash tools/device_fa2.sh     Carried: .whl (gguf, for the engine tests).
# Env: SKIP_TESTS, SANITIZE, SKIP_SWEEP, SWEEP_ARGS, KERNELS, PROBE, EDGELLM_GIT_COMMIT (recorded in results).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
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
[ -z "${SKIP_SWEEP:-}" ] && timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/tools/sweep_fa2.py" --out "$OUT/fa2_sweep.json" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/fa2_sweep.log"
if [ -n "${KERNELS:-}" ]; then
  # Written under /tmp (the charts are too many files to bring back); the report and results.json are copied.
  rm -rf /tmp/bench && python3 "$ROOT/bench/run.py" --suite kernels --out /tmp/bench > "$OUT/bench.log" 2>&1
  echo "kernels suite exit $?"; run_dir=$(ls -d /tmp/bench/*/ | head -1); mkdir -p "$OUT/bench"
  cp "$run_dir/report.md" "$run_dir/results.json" "$OUT/bench/"
  grep -E "target fa2_decode" "$OUT/bench.log" | tail -5
fi
if [ -n "${PROBE:-}" ]; then
  mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
  [ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
  for depth in 0 1000; do
    timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth 2>&1 | grep -E "\"run\": 3|Error" | cut -c1-260 | sed "s/^/[d=$depth] /"
  done
fi
