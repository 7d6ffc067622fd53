#!/usr/bin/env bash
# Nineteenth session, device call: T-MAC stream-kernel variants timed side by side. B = this tree; every other
# variant is this tree with one patch of this folder applied (NAME=PATCH) or reversed (NAME=-PATCH), built in one
# reused build folder. Then tests/test_tmac_gpu.py on B (TEST_K selects), compute-sanitizer memcheck + racecheck on
# B's tests matching SANITIZE_K (if set), and time_stream.py on SHAPES, the builds alternating, ROUNDS rounds.
# Usage on the device from the repo root (carry .whl):
#   VARIANTS="A=-stream_codes.patch A2=old_decode_clamped.patch" bash .../stream_variants.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_nineteenth_session"
source "$ROOT/tools/device_lib.sh"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
t0=$(date +%s)
cd "$ROOT" && rm -rf build
build() {  # build NAME: this tree as it is now, into /tmp/site_NAME
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_$1 -C build-dir=/tmp/bshared "$ROOT" \
    > "$OUT/build_$1.log" 2>&1 || { tail -30 "$OUT/build_$1.log"; exit 1; }
  echo "build $1 done ($(( $(date +%s) - t0 )) s)"
}
build B
names="B"
for spec in ${VARIANTS:-}; do
  name=${spec%%=*}; patch=${spec#*=}; rev=""
  if [ "${patch#-}" != "$patch" ]; then rev="-R"; patch=${patch#-}; fi
  git apply $rev "$HERE/$patch" && build $name && git apply $( [ -z "$rev" ] && echo -R ) "$HERE/$patch" || exit 1
  names="$names $name"
done
git status --short src | head -3
cd /tmp
PYTHONPATH=/tmp/site_B:/tmp/site timeout 200 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider \
  -k "${TEST_K:-not nothing}" > "$OUT/pytest_B.log" 2>&1
echo "tests B exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_B.log")"
grep -E "^FAILED|Error" "$OUT/pytest_B.log" | head -10
if [ -n "${SANITIZE_K:-}" ]; then
  PYTHONPATH=/tmp/site_B:/tmp/site SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-120} device_sanitize tests/test_tmac_gpu.py "$SANITIZE_K"
  echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
fi
SHAPES=${SHAPES:-smol_qkv,smol_gateup,smol_o,smol_down,smol_lmhead,qwen15_gateup,qwen15_down,big_4096,llama8b_qkv,big_14336x4096,llama8b_down}
for round in $(seq ${ROUNDS:-2}); do
  for v in $names; do
    PYTHONPATH=/tmp/site_$v:/tmp/site timeout 120 python3 "$HERE/time_stream.py" "$v $round" $SHAPES 2>&1 \
      | tee -a "$OUT/times.txt"
  done
done
(cd "$OUT" && tar czf ../stream_variants_out.tgz . && rm -rf ./* && mv ../stream_variants_out.tgz .)
