#!/usr/bin/env bash
# Eleventh session, device A/B of the split merge in predicated batches (b76d2d2): the working tree against the
# same tree with the kernel header of 07b1e4c (merge loop unrolled by 16, accumulator rows unpadded), both built
# side by side. As run this session, a copy of that header replaced the tree's; kept here as header_07b1e4c.patch,
# which turns the header of a7d0a4c (and later, while it is unchanged) into it; tools/sweep_fa2_splits.py on the SIMT kernel
# (Qwen2.5-1.5B and SmolLM2-135M at 4096 / 8192 keys) and the tensor-core kernel (Qwen2.5-1.5B 16384 / 65536),
# A B A B (ROUNDS=2); and the timeline of the working tree (mma_timeline.sh; TIMELINE= skips it). Run from the
# repo root (carry .whl).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; E="$ROOT/bench/results/experiments_eleventh_session"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
for v in new old; do rm -rf /tmp/$v && mkdir -p /tmp/$v && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/$v/; done
patch -p1 -s -d /tmp/old < "$E/header_07b1e4c.patch" || exit 2  # the header of 07b1e4c (see the header comment)
t0=$(date +%s)
[ -n "${TIMELINE-1}" ] && (OUT=$OUT/tl bash "$E/mma_timeline.sh" > "$OUT/timeline.log" 2>&1; echo "timeline exit $?" >> "$OUT/timeline.log") &
for v in new old; do
  (python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_$v -C build-dir=/tmp/b$v /tmp/$v \
    > "$OUT/build_$v.log" 2>&1; echo "build $v exit $?") &
done
wait; echo "builds $(( $(date +%s) - t0 )) s"
(cd /tmp && PYTHONPATH=/tmp/site_new:/tmp/site timeout 200 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" -q -p no:cacheprovider \
  > "$OUT/pytest_new.log" 2>&1; echo "pytest (working tree) exit $?: $(tail -1 "$OUT/pytest_new.log")")
cd "$ROOT/tools"
for round in $(seq 1 ${ROUNDS:-2}); do
  for v in new old; do
    PYTHONPATH=/tmp/site_$v:/tmp/site timeout 120 python3 sweep_fa2_splits.py --kernels simt --models Qwen2.5-1.5B SmolLM2-135M \
      --lengths 4096 8192 --iterations 60 --out "$OUT/simt_${v}_$round.json" 2>&1 | cut -c1-420 | sed "s/^/[$v $round] /"
    PYTHONPATH=/tmp/site_$v:/tmp/site timeout 120 python3 sweep_fa2_splits.py --kernels mma --models Qwen2.5-1.5B \
      --lengths 16384 65536 --iterations 60 --out "$OUT/mma_${v}_$round.json" 2>&1 | cut -c1-420 | sed "s/^/[$v $round] /"
  done
done
[ -n "${TIMELINE-1}" ] && grep -E '^\{|exit' "$OUT/timeline.log" | cut -c1-400
