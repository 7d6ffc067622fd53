#!/usr/bin/env bash
# Twentieth session, device call: the T-MAC stream kernel with L2 prefetch of the block's coming tiles, settings
# swept through TMAC_L2_PREFETCH_TILES / TMAC_L2_PREFETCH_MODE (an experimental env override in the launch shape,
# this session's working tree: prefetch_env.patch). One build; tests/test_tmac_gpu.py -k stream under the
# settings in TEST_SETTINGS; compute-sanitizer memcheck + racecheck on the SANITIZE_K stream tests under the first
# one; then time_prefetch.py for the settings in SETTINGS ("tiles:mode"), ROUNDS rounds, settings alternating.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_twentieth_session/prefetch.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_twentieth_session"
source "$ROOT/tools/device_lib.sh"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
t0=$(date +%s)
cd "$ROOT" && rm -rf build
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_B -C build-dir=/tmp/bshared "$ROOT" \
  > "$OUT/build_B.log" 2>&1 || { tail -30 "$OUT/build_B.log"; exit 1; }
echo "build done ($(( $(date +%s) - t0 )) s)"
cd /tmp
export PYTHONPATH=/tmp/site_B:/tmp/site
TEST_SETTINGS=${TEST_SETTINGS:-2:1 2:2}
for s in $TEST_SETTINGS; do
  TMAC_L2_PREFETCH_TILES=${s%%:*} TMAC_L2_PREFETCH_MODE=${s#*:} timeout 200 python3 -m pytest \
    "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider -k "${TEST_K:-stream}" > "$OUT/pytest_${s/:/_}.log" 2>&1
  echo "tests $s exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_${s/:/_}.log")"
  grep -E "^FAILED|Error" "$OUT/pytest_${s/:/_}.log" | head -5
done
if [ -n "${SANITIZE_K:-}" ]; then
  s=${TEST_SETTINGS%% *}; export TMAC_L2_PREFETCH_TILES=${s%%:*} TMAC_L2_PREFETCH_MODE=${s#*:}
  SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-120} device_sanitize tests/test_tmac_gpu.py "$SANITIZE_K"
  unset TMAC_L2_PREFETCH_TILES TMAC_L2_PREFETCH_MODE
  echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
fi
SHAPES=${SHAPES:-big_14336x4096,llama8b_down,llama8b_lmhead,big_4096,llama8b_qkv,qwen15_gateup,qwen15_down,smol_lmhead,smol_qkv}
timeout 400 python3 "$HERE/time_prefetch.py" $SHAPES "${SETTINGS:-0:1 1:1 2:1 1:2 2:2 4:2}" ${ROUNDS:-2} 2>&1 \
  | tee "$OUT/times.txt"
echo "timing done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../prefetch_out.tgz . && rm -rf ./* && mv ../prefetch_out.tgz .)
