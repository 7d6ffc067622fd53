#!/usr/bin/env bash
# Seventeenth session, device call: the T-MAC "stream" kernel in three forms, built once (experiment switch
# EDGELLM_EXP_TMAC_STREAM_FORM in that build only): 0 = committed (x fragments of an item loaded at once, 80
# registers, 3 blocks of 8 warps per SM), 1 = x fragments loaded as the MMAs use them (72 registers, still 3
# blocks), 2 = form 1 bounded to 64 registers (4 blocks of 8 warps per SM; blocks of 16 warps allowed: cap 16),
# 3 = form 1 + each tile's scales loaded with its last weights (not after the barrier), 4 = form 3 bounded to 64
# registers, 5 = form 3 with warp 0 alone reducing each tile behind named barriers (the other warps never wait).
# Call 1 ran forms 0-2 (FORMS="2 1", SWEEP_FORMS="0 1 2"); call 2 the defaults below. Outputs: one tarball.
# Correctness (stream tests; memcheck/racecheck under SANITIZE_FORM) per form, then two rounds of the sweep.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
for form in ${FORMS:-3 4 5}; do
  EDGELLM_EXP_TMAC_STREAM_FORM=$form timeout 300 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -x \
    -p no:cacheprovider -k stream > "$OUT/tests_form$form.log" 2>&1
  echo "form $form tests exit $?"; tail -1 "$OUT/tests_form$form.log"
done
export EDGELLM_EXP_TMAC_STREAM_FORM=${SANITIZE_FORM:-5}
SANITIZE_TIMEOUT=150 device_sanitize tests/test_tmac_gpu.py "stream and (ragged or model_shapes or odd_k)"
unset EDGELLM_EXP_TMAC_STREAM_FORM
for rep in 1 2; do
  for form in ${SWEEP_FORMS:-0 1 3 4 5}; do
    caps=8; { [ $form = 2 ] || [ $form = 4 ]; } && caps=8,16
    EDGELLM_EXP_TMAC_STREAM_FORM=$form timeout 200 python3 "$ROOT/tools/sweep_tmac.py" --variants stream \
      --caps $caps --out "$OUT/sweep_form${form}_rep$rep.json" > "$OUT/sweep_form${form}_rep$rep.log" 2>&1
    echo "form $form rep $rep exit $?"
  done
done
grep -h "" "$OUT"/sweep_form*_rep1.log
(cd "$OUT" && tar czf ../stream_forms_out.tgz . && rm -rf ./* && mv ../stream_forms_out.tgz .)
