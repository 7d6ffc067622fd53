#!/usr/bin/env bash
# Twenty-first session, device call: one experimental build (variants read from EDGELLM_EXP_* at graph capture:
# the LM head's streamed rounds with 2-6 stages or off, the vectorized or the old argmax, the RmsNorm scale folded
# into the dot products or not); tests/test_engine_gpu.py under the build's defaults, a subset under the other
# settings; memcheck + racecheck on SANITIZE_K; then time_engine_settings.py on the random model with SmolLM2-135M's
# shapes, vocabulary and types (logits compared across settings, decode tok/s at depths 0 and 1000 alternating,
# stage traces).
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twenty_first_session/engine_head.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_twenty_first_session"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
timeout 200 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine.log" 2>&1
echo "engine tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine.log")"
grep -E "^FAILED|Error" "$OUT/pytest_engine.log" | head -5
for s in ${TEST_SETTINGS:-EDGELLM_EXP_FOLD_NORM=1 EDGELLM_EXP_HEAD_STAGES=2 EDGELLM_EXP_HEAD_STAGES=6}; do
  env "$s" timeout 150 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider \
    -k "tiny_models or greedy or loops_over_rounds or fp16_weights_match or batched_prefill" > "$OUT/pytest_$s.log" 2>&1
  echo "engine tests [$s] exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_$s.log")"
  grep -E "^FAILED" "$OUT/pytest_$s.log" | head -5
done
SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-200} device_sanitize tests/test_engine_gpu.py \
  "${SANITIZE_K:-loops_over_rounds or greedy_generation_and_state}"
echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
[ -f /tmp/smolfull.gguf ] || python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
SETTINGS=${SETTINGS:-"EDGELLM_EXP_HEAD_STAGES=0,EDGELLM_EXP_ARGMAX_OLD=1 EDGELLM_EXP_HEAD_STAGES=0 EDGELLM_EXP_HEAD_STAGES=2 EDGELLM_EXP_HEAD_STAGES=3 default EDGELLM_EXP_HEAD_STAGES=6 EDGELLM_EXP_FOLD_NORM=1"}
timeout ${TIME_TIMEOUT:-300} python3 "$HERE/time_engine_settings.py" /tmp/smolfull.gguf "$SETTINGS" ${ROUNDS:-3} 0,1000 4 \
  2>&1 | tee "$OUT/times.jsonl" | python3 -c "
import json, sys
for line in sys.stdin:
    try: d = json.loads(line)
    except ValueError: print(line.rstrip()); continue
    if 'decode_tok_s_median' in d: print(d['round'], d['depth'], d['setting'], d['decode_tok_s_median'], d['first_tokens'])
    elif 'graph_stage_trace_us' in d: t = d['graph_stage_trace_us']; print(d['setting'], 'total', t['total'], 'head', t['per_kind_mean']['head'])
    else: print(d)
"
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../engine_head_out.tgz . && rm -rf ./* && mv ../engine_head_out.tgz .)
