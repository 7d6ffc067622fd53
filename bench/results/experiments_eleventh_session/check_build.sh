#!/usr/bin/env bash
# Eleventh session, device check of a kernel change (working tree): build; fa2 tests; memcheck and racecheck on
# the tests selected by K; the timeline (mma_timeline.sh); the tensor-core split sweep at 16384 / 65536 keys (NAME
# in its file name); with KERNELS_BENCH=1 the kernels suite. Run from the repo root on the device (carry .whl).
# Runs this session: the staged merge (K="several_rounds or (split_counts and mma)" NAME=staged_merge, no kernels
# suite), the cluster pre-merge (K=${K:-"cluster or (split_counts and mma)"} NAME=cluster), b76d2d2 (the same, with
# KERNELS_BENCH=1).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; E="$ROOT/bench/results/experiments_eleventh_session"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
t0=$(date +%s)
(OUT=$OUT/tl bash "$E/mma_timeline.sh" > "$OUT/timeline.log" 2>&1; echo "timeline exit $?" >> "$OUT/timeline.log") &
python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
cd /tmp
PYTHONPATH=/tmp/site timeout 300 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" -q -x -p no:cacheprovider > "$OUT/pytest.log" 2>&1
rc=$?; echo "pytest exit $rc"; tail -3 "$OUT/pytest.log"
wait; grep -E '^\{|exit|Error|error' "$OUT/timeline.log" | cut -c1-400
K=${K:-"cluster or (split_counts and mma)"}
for tool in memcheck racecheck; do
  PYTHONPATH=/tmp/site timeout ${SANITIZE_TIMEOUT:-150} compute-sanitizer --tool $tool --target-processes all \
    python3 -m pytest "$ROOT/tests/test_fa2_decode.py" -q -x -p no:cacheprovider -k "$K" > "$OUT/$tool.log" 2>&1
  echo "$tool exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|passed|failed' "$OUT/$tool.log" | tr '\n' ' ' | cut -c1-200)"
done
(cd "$ROOT/tools" && PYTHONPATH=/tmp/site timeout 200 python3 sweep_fa2_splits.py --kernels mma \
  --lengths 16384 65536 --iterations 40 --out "$OUT/sweep_${NAME:-cluster}.json" 2>&1 | cut -c1-200)
[ $rc = 0 ] && [ -n "${KERNELS_BENCH:-}" ] && (cd "$ROOT" && PYTHONPATH=/tmp/site EDGELLM_GIT_COMMIT=${EDGELLM_GIT_COMMIT:-} \
  timeout 240 python3 bench/run.py --suite kernels --out "$OUT/bench" > "$OUT/bench.log" 2>&1; echo "bench exit $?"; tail -3 "$OUT/bench.log")
