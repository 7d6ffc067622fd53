#!/usr/bin/env bash
# Device call for the GPU decode engine (issue 6): build, GPU engine tests (+ compute-sanitizer memcheck on them),
# a speed probe on a random SmolLM2-shaped model. Usage on the device, from the repo root:
#   bash tools/device_engine.sh
# Carried: .whl (gguf + deps). Logs under $OUT.
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
python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -x 2>&1 | tee "$OUT/pytest_engine.log" | tail -25
[ -n "${SANITIZE:-}" ] && { compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -k "bad_input or greedy" > "$OUT/memcheck.log" 2>&1; echo "memcheck exit $?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/memcheck.log" | tail -3; }
mkdir -p /tmp/synth
python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 3 2>&1 | tee "$OUT/probe.log" | cut -c1-400
python3 "$ROOT/tools/engine_probe.py" --model /tmp/synth/smol_shaped.gguf --depth 1000 --runs 2 --new 64 2>&1 | cut -c1-300 | tail -3
