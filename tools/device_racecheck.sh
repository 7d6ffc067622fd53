#!/usr/bin/env bash
# compute-sanitizer racecheck of the GPU engine tests (device call; carry .whl): the graph step on the usual
# subset, the persistent step on its smallest test (racecheck slows the persistent kernel ~100x: the whole usual
# subset did not finish in 400 s).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
for k in "graph and (bad_input or greedy or programmatic or llama-types0)" "bad_input and persistent"; do
  timeout ${SANITIZE_TIMEOUT:-200} compute-sanitizer --tool racecheck --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -k "$k" > "$OUT/racecheck.log" 2>&1
  echo "racecheck [$k] exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|passed|failed" "$OUT/racecheck.log" | tail -3
done
