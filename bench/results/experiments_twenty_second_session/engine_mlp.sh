#!/usr/bin/env bash
# Twenty-second session, device call: one build with the fused MLP kernel (gpu_engine.cu's mlp_kernel; the
# environment variable EDGELLM_EXP_UNFUSED_MLP=1, read when a GpuEngine is made, turns it off);
# tests/test_engine_gpu.py as built, a subset with the fusion off; memcheck + racecheck on SANITIZE_K; then
# time_engine_settings.py on the random model with SmolLM2-135M's shapes, vocabulary and types (logits compared
# across settings, decode tok/s at depths 0 and 1000 alternating, stage traces).
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twenty_second_session/engine_mlp.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_twenty_second_session"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
[ -f /tmp/smolfull.gguf ] || python3 "$ROOT/bench/results/experiments_twentieth_session/write_smol_full_vocab.py" /tmp/smolfull.gguf
SETTINGS=${SETTINGS:-"default EDGELLM_EXP_UNFUSED_MLP=1"}
timeout ${TIME_TIMEOUT:-200} python3 "$HERE/time_engine_settings.py" /tmp/smolfull.gguf "$SETTINGS" ${ROUNDS:-3} 0,1000 4 \
  2>&1 | tee "$OUT/times.jsonl" | python3 -c "
import json, sys
for line in sys.stdin:
    try: d = json.loads(line)
    except ValueError: print(line.rstrip()); continue
    if 'decode_tok_s_median' in d: print(d['round'], d['depth'], d['setting'], d['decode_tok_s_median'], d['first_tokens'])
    elif 'graph_stage_trace_us' in d: t = d['graph_stage_trace_us']; print(d['setting'], 'total', t['total'], {k: v['work'] for k, v in t['per_kind_mean'].items()})
    else: print(d)
"
echo "timing done ($(( $(date +%s) - t0 )) s)"
timeout ${TEST_TIMEOUT:-200} python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine.log" 2>&1
echo "engine tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine.log")"
grep -E "^FAILED|Error" "$OUT/pytest_engine.log" | head -8
for s in ${TEST_SETTINGS:-EDGELLM_EXP_UNFUSED_MLP=1}; do
  env "$s" timeout 150 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider \
    -k "greedy or loops_over_rounds or batched_prefill or programmatic" > "$OUT/pytest_$s.log" 2>&1
  echo "engine tests [$s] exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_$s.log")"
  grep -E "^FAILED" "$OUT/pytest_$s.log" | head -5
done
if [ -n "${SANITIZE_K:-}" ]; then
  SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-150} device_sanitize tests/test_engine_gpu.py "$SANITIZE_K"
  echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
fi
echo "done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../engine_mlp_out.tgz . && rm -rf ./* && mv ../engine_mlp_out.tgz .)
