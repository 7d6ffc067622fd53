#!/usr/bin/env bash
# Twentieth session, device call: one build of this tree (an experimental build reading its variant from the
# environment), tests/test_tmac_gpu.py -k TEST_K under each setting of TEST_SETTINGS, compute-sanitizer memcheck +
# racecheck on the SANITIZE_K tests under the first one, then time_settings.py: SHAPES x SETTINGS, ROUNDS rounds.
# A setting: "VAR=VALUE[,VAR=VALUE...]". Usage on the device from the repo root (carry .whl):
#   SETTINGS="TMAC_LOAD_POLICY=0 TMAC_LOAD_POLICY=1" bash bench/results/experiments_twentieth_session/settings.sh
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
with_setting() {  # with_setting SETTING CMD...: run CMD with the setting's variables exported
  local setting=$1 assignment; shift
  ( for assignment in ${setting//,/ }; do export "$assignment"; done; "$@" )
}
i=0
for s in ${TEST_SETTINGS:-}; do
  i=$((i + 1))
  with_setting "$s" timeout 200 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider \
    -k "${TEST_K:-stream}" > "$OUT/pytest_$i.log" 2>&1
  echo "tests [$s] exit $? ($(( $(date +%s) - t0 )) s): $(tail -1 "$OUT/pytest_$i.log")"
  grep -E "^FAILED|Error" "$OUT/pytest_$i.log" | head -5
done
if [ -n "${SANITIZE_K:-}" ]; then
  first=${TEST_SETTINGS%% *}
  SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-120} with_setting "$first" device_sanitize tests/test_tmac_gpu.py "$SANITIZE_K"
  echo "sanitizers [$first] done ($(( $(date +%s) - t0 )) s)"
fi
SHAPES=${SHAPES:-big_14336x4096,llama8b_down,llama8b_lmhead,big_4096,llama8b_qkv,qwen15_gateup,qwen15_down,smol_lmhead,smol_qkv}
timeout ${TIME_TIMEOUT:-400} python3 "$HERE/time_settings.py" $SHAPES "$SETTINGS" ${ROUNDS:-2} 2>&1 | tee "$OUT/times.txt"
echo "timing done ($(( $(date +%s) - t0 )) s)"
(cd "$OUT" && tar czf ../settings_out.tgz . && rm -rf ./* && mv ../settings_out.tgz .)
