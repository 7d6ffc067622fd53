#!/usr/bin/env bash
# Experiment (not kept; see README.md): fa2 mma ring 96 vs 192 vs 224 KB, three builds in parallel.
set -uo pipefail
ROOT=$(pwd); OUT=${OUT:-/tmp/out}; mkdir -p $OUT
export CUDAARCHS=90 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
t0=$(date +%s)
for kb in 96 192 224; do
  (CUDAFLAGS="-DEDGELLM_FA2_RING_KB=$kb" python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/r$kb \
     -C build-dir=/tmp/b$kb . > $OUT/build$kb.log 2>&1; echo "build $kb exit $? $(( $(date +%s) - t0 )) s") &
done
wait
cd /tmp
for kb in 96 192 224; do
  PYTHONPATH=/tmp/r$kb:/tmp/site timeout 200 python3 $ROOT/bench/results/experiments_ninth_session/time_fa2_mma.py $kb 2>&1 | tee -a $OUT/ring.jsonl | cut -c1-300
done
PYTHONPATH=/tmp/r192:/tmp/site timeout 150 python3 -m pytest $ROOT/tests/test_fa2_decode.py -q -x -p no:cacheprovider 2>&1 | tail -3
