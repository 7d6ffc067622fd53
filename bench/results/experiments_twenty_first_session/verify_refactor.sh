#!/usr/bin/env bash
# Twenty-first session, device call 5: the kept engine after the simplification of the head's stage count (a
# compile-time constant instead of a launch parameter): build; tests/test_engine_gpu.py; memcheck + racecheck on the
# new head test (Q8_0, f32) and the greedy-decode tests; tools/engine_probe.py --trace on the random model with
# SmolLM2-135M's shapes, vocabulary and types at depth 0.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twenty_first_session/verify_refactor.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
timeout 200 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine.log" 2>&1
echo "engine tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine.log")"
SANITIZE_TIMEOUT=220 device_sanitize tests/test_engine_gpu.py "(loops_over_rounds and f32 and Q8_0) or greedy_generation_and_state"
python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/smolfull.gguf --depth 0 --runs 4 --trace > "$OUT/probe.jsonl" 2>&1
echo "probe decode tok/s: $(grep -o '"decode_tok_s": [0-9.]*' "$OUT/probe.jsonl" | tail -4 | cut -d' ' -f2 | tr '\n' ' ')"
echo "trace: $(tail -1 "$OUT/probe.jsonl" | grep -o '"head": {[^}]*}')"
echo "done ($(( $(date +%s) - t0 )) s)"
