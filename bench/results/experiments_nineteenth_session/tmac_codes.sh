#!/usr/bin/env bash
# Nineteenth session, device call: the T-MAC stream kernel multiplying the 2-bit codes themselves (fp16 subnormals
# from one LOP3 per weight pair, four accumulator classes, sum_k x_k subtracted per row) against the committed
# decode (LOP3 + HFMA2 per pair, w = q - 1). B = this tree; A = this tree with stream_codes.patch reversed (the
# patch is `git diff` of src/cuda/tmac_gemv.cu against the session's base commit). One build folder reused.
# Then tests/test_tmac_gpu.py on B (TEST_K selects; default all), compute-sanitizer memcheck + racecheck on B's
# stream tests (SANITIZE_K), and tools/sweep_tmac.py (stream, default cap) alternating A and B, two rounds.
# One tarball comes back. Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_nineteenth_session"
source "$ROOT/tools/device_lib.sh"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
t0=$(date +%s)
cd "$ROOT" && rm -rf build
for v in B A; do
  [ $v = B ] || git apply -R "$HERE/stream_codes.patch" || exit 1
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_$v -C build-dir=/tmp/bshared "$ROOT" \
    > "$OUT/build_$v.log" 2>&1 || { tail -30 "$OUT/build_$v.log"; exit 1; }
  echo "build $v done ($(( $(date +%s) - t0 )) s)"
  [ $v = B ] || git apply "$HERE/stream_codes.patch" || exit 1
done
git status --short src | head -3
cd /tmp
PYTHONPATH=/tmp/site_B:/tmp/site timeout 300 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider \
  -k "${TEST_K:-not nothing}" > "$OUT/pytest_B.log" 2>&1
echo "tests B exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_B.log")"
grep -E "^FAILED|Error|assert" "$OUT/pytest_B.log" | head -20
if [ -n "${SANITIZE_K:-}" ]; then
  PYTHONPATH=/tmp/site_B:/tmp/site SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-150} device_sanitize tests/test_tmac_gpu.py "$SANITIZE_K"
  echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
fi
SHAPES=${SHAPES:-big_4096,big_14336x4096,llama8b_qkv,llama8b_down,smol_lmhead,qwen15_gateup,smol_qkv,smol_gateup,qwen15_down}
for rep in 1 2; do
  for v in A B; do
    PYTHONPATH=/tmp/site_$v:/tmp/site timeout 150 python3 "$ROOT/tools/sweep_tmac.py" --variants stream --caps 0 \
      --shapes $SHAPES --out "$OUT/sweep_${v}_rep$rep.json" > "$OUT/sweep_${v}_rep$rep.log" 2>&1
    echo "sweep $v rep $rep exit $? ($(( $(date +%s) - t0 )) s)"
    sed "s/^/[$v $rep] /" "$OUT/sweep_${v}_rep$rep.log"
  done
done
(cd "$OUT" && tar czf ../tmac_codes_out.tgz . && rm -rf ./* && mv ../tmac_codes_out.tgz .)
