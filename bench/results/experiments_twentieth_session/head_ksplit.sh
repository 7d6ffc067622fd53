#!/usr/bin/env bash
# Twentieth session, device call: the LM head's GEMV with 1, 2 (the default at K = 576) or 4 warps per row pair
# (EDGELLM_EXP_HEAD_KSPLIT, head_ksplit.patch on 56479f3's engine). Build; tests/test_engine_gpu.py -k TEST_K with
# each setting; tools/engine_probe.py on the random model with SmolLM2-135M's shapes, vocabulary and types,
# depths 0 and 1000, settings alternating, ROUNDS rounds; one --trace run per setting at depth 0.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twentieth_session/head_ksplit.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
for ks in 1 4; do
  EDGELLM_EXP_HEAD_KSPLIT=$ks timeout 200 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider \
    -k "${TEST_K:-tiny_models or greedy}" > "$OUT/pytest_ks$ks.log" 2>&1
  echo "engine tests (head ksplit $ks) exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_ks$ks.log")"
done
[ -f /tmp/smolfull.gguf ] || python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
for round in $(seq ${ROUNDS:-2}); do
  for depth in 0 1000; do
    for ks in 0 1 4; do
      EDGELLM_EXP_HEAD_KSPLIT=$ks timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/smolfull.gguf \
        --depth $depth --runs 4 > "$OUT/probe_r${round}_d${depth}_ks$ks.jsonl" 2>&1
      echo "round $round depth $depth head ksplit $ks: decode tok/s $(grep -o '"decode_tok_s": [0-9.]*' \
        "$OUT/probe_r${round}_d${depth}_ks$ks.jsonl" | tail -4 | cut -d' ' -f2 | tr '\n' ' ')"
    done
  done
done
for ks in 0 1 4; do
  EDGELLM_EXP_HEAD_KSPLIT=$ks timeout 120 python3 "$ROOT/tools/engine_probe.py" --model /tmp/smolfull.gguf --depth 0 \
    --runs 1 --trace > "$OUT/trace_ks$ks.jsonl" 2>&1
  echo "trace head ksplit $ks: head $(tail -1 "$OUT/trace_ks$ks.jsonl" | grep -o '"head": {[^}]*}')"
done
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../head_ksplit_out.tgz . && rm -rf ./* && mv ../head_ksplit_out.tgz .)
