#!/usr/bin/env bash
# Twentieth session, device call: the GPU engine's GEMVs with the grid capped by the kernel's real occupancy
# (EDGELLM_EXP_GRID_OCC=1; the LM head's 528 blocks otherwise run in two waves at 3 blocks per SM) and/or the
# K-split reduction synced per group by a named barrier instead of __syncthreads (EDGELLM_EXP_GROUP_BARRIER=1):
# engine_head.patch. Build; tests/test_engine_gpu.py with both on; tools/engine_probe.py on a random model with
# SmolLM2-135M's shapes, vocabulary and types (write_smol_full_vocab.py), depths 0 and 1000, the four settings
# alternating, ROUNDS rounds; one --trace run per setting at depth 0.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twentieth_session/engine_head.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
EDGELLM_EXP_GRID_OCC=1 EDGELLM_EXP_GROUP_BARRIER=1 timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -x \
  -p no:cacheprovider > "$OUT/pytest_engine_exp.log" 2>&1
echo "engine tests (both on) exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine_exp.log")"
[ -f /tmp/smolfull.gguf ] || python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
SETTINGS=${SETTINGS:-"0:0 1:0 0:1 1:1"}
for round in $(seq ${ROUNDS:-2}); do
  for depth in 0 1000; do
    for s in $SETTINGS; do
      EDGELLM_EXP_GRID_OCC=${s%%:*} EDGELLM_EXP_GROUP_BARRIER=${s#*:} timeout 120 python3 "$ROOT/tools/engine_probe.py" \
        --model /tmp/smolfull.gguf --depth $depth --runs 4 > "$OUT/probe_r${round}_d${depth}_${s/:/_}.jsonl" 2>&1
      echo "round $round depth $depth occ:bar $s: decode tok/s $(grep -o '"decode_tok_s": [0-9.]*' \
        "$OUT/probe_r${round}_d${depth}_${s/:/_}.jsonl" | tail -4 | cut -d' ' -f2 | tr '\n' ' ')"
    done
  done
done
for s in $SETTINGS; do
  EDGELLM_EXP_GRID_OCC=${s%%:*} EDGELLM_EXP_GROUP_BARRIER=${s#*:} timeout 120 python3 "$ROOT/tools/engine_probe.py" \
    --model /tmp/smolfull.gguf --depth 0 --runs 1 --trace > "$OUT/trace_${s/:/_}.jsonl" 2>&1
  echo "trace occ:bar $s: $(tail -1 "$OUT/trace_${s/:/_}.jsonl" | cut -c1-520)"
done
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../engine_head_out.tgz . && rm -rf ./* && mv ../engine_head_out.tgz .)
