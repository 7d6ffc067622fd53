#!/usr/bin/env bash
# Fourteenth session, after the tensor-core ring's alignment fix: build; compute-sanitizer memcheck and racecheck
# on the fa2 tests that run the tensor-core kernel; tools/sweep_fa2_splits.py (both kernels, every split count,
# the merge kernel) at LENGTHS, to re-check fa2_default_variant's crossover and the split rule.
# Usage on the device, from the repo root (carry .whl): bash bench/results/experiments_fourteenth_session/fa2_rule_check.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-150} device_sanitize tests/test_fa2_decode.py "${SANITIZE_K:-tensor_core or mma}"
timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/tools/sweep_fa2_splits.py" --kernels simt mma --merges kernel \
  --lengths ${LENGTHS:-2048 4096 8192 16384 65536} --out "$OUT/fa2_splits.json" --md "$OUT/fa2_splits.md" > "$OUT/fa2_splits.log" 2>&1
echo "sweep exit $?"; cat "$OUT/fa2_splits.md" 2>/dev/null | tail -45
