#!/usr/bin/env bash
# Twentieth session, device call: the GPU engine's GEMV blocks spread over more SMs (EDGELLM_SPREAD_SKIP=8: blocks
# b >= 32 with b % 32 < 8 do no work, the experimental build of engine_spread.patch) against the present grid.
# Build; tests/test_engine_gpu.py with the spread on; then tools/engine_probe.py on a random SmolLM2-shaped model,
# depths 0 and 1000, spread off / on alternating, ROUNDS rounds, plus one --trace run of each.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twentieth_session/engine_spread.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
EDGELLM_SPREAD_SKIP=8 timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider \
  > "$OUT/pytest_engine_spread.log" 2>&1
echo "engine tests (spread on) exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine_spread.log")"
mkdir -p /tmp/syn && python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/syn --runs 1 --new 8 > /dev/null 2>&1
for round in $(seq ${ROUNDS:-2}); do
  for depth in 0 1000; do
    for skip in 0 8; do
      EDGELLM_SPREAD_SKIP=$skip timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/syn/smol_shaped.gguf \
        --depth $depth --runs 5 > "$OUT/probe_r${round}_d${depth}_s${skip}.jsonl" 2>&1
      echo "round $round depth $depth skip $skip: decode tok/s $(grep -o '"decode_tok_s": [0-9.]*' \
        "$OUT/probe_r${round}_d${depth}_s${skip}.jsonl" | tail -5 | cut -d' ' -f2 | tr '\n' ' ')"
    done
  done
done
for skip in 0 8; do
  EDGELLM_SPREAD_SKIP=$skip timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/syn/smol_shaped.gguf \
    --depth 0 --runs 2 --trace > "$OUT/trace_s${skip}.jsonl" 2>&1
  echo "trace skip $skip: $(tail -1 "$OUT/trace_s${skip}.jsonl" | cut -c1-600)"
done
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../engine_spread_out.tgz . && rm -rf ./* && mv ../engine_spread_out.tgz .)
