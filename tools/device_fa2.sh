#!/usr/bin/env bash
# Device call for fa2_decode (issue 4): build, the fa2 and GPU engine tests (+ compute-sanitizer memcheck and
# racecheck on the variant tests), then tools/sweep_fa2.py (every variant beside SDPA) into $OUT.
# With KERNELS=1 also the kernels suite (bench/run.py --suite kernels) into $OUT/bench, and with PROBE=1 the GPU
# engine's speed probe on a random SmolLM2-shaped model (depths 0 and 1000).
# Usage on the device, from the repo root: bash tools/device_fa2.sh     Carried: .whl (gguf, for the engine tests).
# Env: SKIP_TESTS, SANITIZE (+ SANITIZE_K: pytest -k of the sanitized tests), SKIP_SWEEP, SWEEP_ARGS, SWEEP_TIMEOUT,
# KERNELS, PROBE, EDGELLM_GIT_COMMIT (recorded in results).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_kernel_call pytest_fa2.log tests/test_fa2_decode.py "both_variants and float16" tools/sweep_fa2.py fa2_sweep.json \
  tests/test_fa2_decode.py tests/test_engine_gpu.py
if [ -n "${PROBE:-}" ]; then
  mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
  [ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
  for depth in 0 1000; do
    timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth 2>&1 | grep -E "\"run\": 3|Error" | cut -c1-260 | sed "s/^/[d=$depth] /"
  done
fi
