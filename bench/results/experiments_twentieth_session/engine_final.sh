#!/usr/bin/env bash
# Twentieth session, device call: the kept engine change (GEMV grid within one wave, per-group named barrier in the
# K-split reduction) as committed: build; tests/test_engine_gpu.py (graph and persistent step modes);
# compute-sanitizer memcheck + racecheck on its tests matching SANITIZE_K; tools/engine_probe.py on the random
# model with SmolLM2-135M's shapes, vocabulary and types (write_smol_full_vocab.py), depths 0 and 1000, ROUNDS
# rounds, and one --trace run at depth 0.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twentieth_session/engine_final.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine.log" 2>&1
echo "engine tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine.log")"
SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-200} device_sanitize tests/test_engine_gpu.py "${SANITIZE_K:-not real}"
echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
[ -f /tmp/smolfull.gguf ] || python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
for round in $(seq ${ROUNDS:-2}); do
  for depth in 0 1000; do
    timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/smolfull.gguf --depth $depth --runs 4 \
      > "$OUT/probe_r${round}_d${depth}.jsonl" 2>&1
    echo "round $round depth $depth: decode tok/s $(grep -o '"decode_tok_s": [0-9.]*' "$OUT/probe_r${round}_d${depth}.jsonl" \
      | tail -4 | cut -d' ' -f2 | tr '\n' ' ')"
  done
done
timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/smolfull.gguf --depth 0 --runs 1 --trace > "$OUT/trace.jsonl" 2>&1
echo "trace: $(tail -1 "$OUT/trace.jsonl" | cut -c1-520)"
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../engine_final_out.tgz . && rm -rf ./* && mv ../engine_final_out.tgz .)
