#!/usr/bin/env bash
# Experiment (not kept; see README.md): fa2 split merge single-level vs two-level (groups of 8, 16).
set -uo pipefail
ROOT=$(pwd); OUT=${OUT:-/tmp/out}; mkdir -p $OUT
export CUDAARCHS=90 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
t0=$(date +%s)
build() {  # label flags
  (CUDAFLAGS="$2" python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/m$1 -C build-dir=/tmp/mb$1 . \
     > $OUT/build_$1.log 2>&1; echo "build $1 exit $? $(( $(date +%s) - t0 )) s")
}
build single "-DEDGELLM_FA2_TWO_LEVEL_MIN_SPLITS=1000" & build g8 "" & build g16 "-DEDGELLM_FA2_MERGE_GROUP=16" &
wait
cd /tmp
PYTHONPATH=/tmp/mg8:/tmp/site timeout 150 python3 -m pytest $ROOT/tests/test_fa2_decode.py -q -x -p no:cacheprovider 2>&1 | tail -3
PYTHONPATH=/tmp/mg16:/tmp/site timeout 100 python3 -m pytest $ROOT/tests/test_fa2_decode.py -q -x -p no:cacheprovider -k split_counts 2>&1 | tail -2
for l in single g8 g16; do
  PYTHONPATH=/tmp/m$l:/tmp/site timeout 200 python3 $ROOT/bench/results/experiments_ninth_session/time_fa2_mma.py $l 2>&1 | tee -a $OUT/merge.jsonl | python3 -c "
import sys, json
for line in sys.stdin:
    try: r = json.loads(line)
    except Exception: print(line.rstrip()); continue
    print(r['label'], r['model'], r['length'], 'mma x%d %.2f/%.2f' % (r['mma']['splits'], r['mma']['events_us'], r['mma']['graph_us']),
          '2x: x%d %.2f/%.2f' % (r['mma 2x splits']['splits'], r['mma 2x splits']['events_us'], r['mma 2x splits']['graph_us']),
          'sdpa %.2f' % r['sdpa_events_us'] if 'sdpa_events_us' in r else '')
"
done
for tool in memcheck racecheck; do
  PYTHONPATH=/tmp/mg8:/tmp/site timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest $ROOT/tests/test_fa2_decode.py -q -p no:cacheprovider -k "split_counts" > $OUT/$tool.log 2>&1
  echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" $OUT/$tool.log | tail -3
done
