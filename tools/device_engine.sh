#!/usr/bin/env bash
# Device call for the GPU decode engine (issue 6): build, GPU engine tests (+ compute-sanitizer memcheck on them),
# speed probes on a random SmolLM2-shaped model (graph and persistent steps, depths 0 and 1000; the same shapes
# with F16 matrices through the fp16 weight path, and the Q4_1 model with f32 activations, graph step) and, with NCU=1, an ncu per-kernel breakdown of the
# graph step.
# Usage on the device, from the repo root: bash tools/device_engine.sh      Carried: .whl (gguf + deps).
# Switches: SKIP_BUILD=1 (edgellm_ext already installed by an earlier script of the same call), SKIP_TESTS=1,
# SANITIZE=1 (+ SANITIZE_K: pytest -k of the memcheck/racecheck runs, SANITIZERS: which of the two, SANITIZE_TIMEOUT:
# seconds per tool, 600 by default), SKIP_PERSISTENT=1, NCU=1, TEST_TIMEOUT, CUT.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
# The first half of the real GGUF, when carried, for a following `tools/device_e2e.sh run` call.
[ -f "$ROOT/.devcarry/model1/smol.part1" ] && mkdir -p /tmp/smol && cp "$ROOT/.devcarry/model1/smol.part1" /tmp/smol/
if [ -z "${SKIP_BUILD:-}" ]; then
  rm -rf "$ROOT/build"
  t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build $(( $(date +%s) - t0 )) s"
fi
cd /tmp
[ -z "${SKIP_TESTS:-}" ] && timeout ${TEST_TIMEOUT:-300} python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest_engine.log" | tail -${TAIL:-25}
[ -n "${SANITIZE:-}" ] && for tool in ${SANITIZERS:-memcheck racecheck}; do timeout ${SANITIZE_TIMEOUT:-600} compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -k "${SANITIZE_K:-bad_input or greedy}" > "$OUT/$tool.log" 2>&1; echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/$tool.log" | tail -3; done
mkdir -p /tmp/synth
M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
modes="graph persistent"; [ -n "${SKIP_PERSISTENT:-}" ] && modes=graph
for mode in $modes; do
  for depth in 0 1000; do
    trace=""; [ $mode = persistent ] && trace=--trace
    timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth --step-mode $mode --activations q8_1 $trace 2>&1 | grep -E "\"run\": 3|stage_trace|Error" | cut -c1-${CUT:-260} | sed "s/^/[$mode q8_1-act d=$depth] /"
  done
done
for depth in 0 1000; do  # quantized weights with f32 activations (the activations option)
  timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth --activations f32 2>&1 | grep -E "\"run\": 3|Error" | cut -c1-${CUT:-260} | sed "s/^/[graph f32-act d=$depth] /"
done
M16=/tmp/synth/smol_shaped_f16.gguf
[ -f $M16 ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --synthetic-type F16 --runs 0 > /dev/null
for depth in 0 1000; do
  timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M16 --runs 3 --depth $depth 2>&1 | grep -E "\"run\": 3|Error" | cut -c1-${CUT:-260} | sed "s/^/[graph f16 d=$depth] /"
done
if [ -n "${NCU:-}" ]; then
  ncu --csv --cache-control none --clock-control none --metrics gpu__time_duration.sum python3 "$ROOT/tools/engine_probe.py" --model $M --runs 0 --new 3 --step-mode graph > "$OUT/ncu.csv" 2>/dev/null
  python3 "$ROOT/tools/ncu_kernel_times.py" "$OUT/ncu.csv"
fi
