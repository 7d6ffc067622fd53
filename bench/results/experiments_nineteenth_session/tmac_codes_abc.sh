#!/usr/bin/env bash
# Nineteenth session, device call: where the code-multiplying stream kernel (B = this tree: each warp subtracts
# the sum of the x it multiplies) loses time on short rows. A = the committed decode (stream_codes.patch reversed), C = B without the sum of x (timing_no_xsum.patch:
# wrong results, timed only). One build folder reused; tests/test_tmac_gpu.py on B (+ compute-sanitizer on the
# tests matching SANITIZE_K); time_stream.py, builds alternating, ROUNDS rounds.
# Run from the repo root on the device (carry .whl).
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
git apply "$HERE/timing_no_xsum.patch" && build C && git apply -R "$HERE/timing_no_xsum.patch" || exit 1
git apply -R "$HERE/stream_codes.patch" && build A && git apply "$HERE/stream_codes.patch" || exit 1
git status --short src | head -3
cd /tmp
PYTHONPATH=/tmp/site_B:/tmp/site timeout 200 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider \
  > "$OUT/pytest_B.log" 2>&1
echo "tests B exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_B.log")"
grep -E "^FAILED|Error" "$OUT/pytest_B.log" | head -10
if [ -n "${SANITIZE_K:-}" ]; then
  PYTHONPATH=/tmp/site_B:/tmp/site SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-120} device_sanitize tests/test_tmac_gpu.py "$SANITIZE_K"
  echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
fi
SHAPES=${SHAPES:-smol_qkv,smol_gateup,smol_o,smol_down,smol_lmhead,qwen15_gateup,big_4096,big_14336x4096,llama8b_down}
for round in $(seq ${ROUNDS:-2}); do
  for v in A B C; do
    PYTHONPATH=/tmp/site_$v:/tmp/site timeout 120 python3 "$HERE/time_stream.py" "$v $round" $SHAPES 2>&1 \
      | tee -a "$OUT/times.txt"
  done
done
(cd "$OUT" && tar czf ../tmac_abc_out.tgz . && rm -rf ./* && mv ../tmac_abc_out.tgz .)
