#!/usr/bin/env bash
# Seventeenth session, device call 3: the T-MAC "stream" kernel as committed next (x read lazily, scales
# prefetched; 80 registers) with rings of 3, 4 and 5 items per warp (the lazy x loads freed the registers a deeper
# ring needs: all three compile to 80 registers, no spills). Experiment switch EDGELLM_EXP_TMAC_STREAM_DEPTH in
# this build only (stream_depth.patch). Tests of the stream variant per depth, memcheck/racecheck at depth 3, then
# two rounds of the sweep per depth. Outputs: one tarball.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
for depth in 3 4 5; do
  EDGELLM_EXP_TMAC_STREAM_DEPTH=$depth timeout 300 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -x \
    -p no:cacheprovider -k stream > "$OUT/tests_depth$depth.log" 2>&1
  echo "depth $depth tests exit $?"; tail -1 "$OUT/tests_depth$depth.log"
done
SANITIZE_TIMEOUT=150 device_sanitize tests/test_tmac_gpu.py "stream and (ragged or model_shapes or odd_k)"
for rep in 1 2; do
  for depth in 3 4 5; do
    EDGELLM_EXP_TMAC_STREAM_DEPTH=$depth timeout 200 python3 "$ROOT/tools/sweep_tmac.py" --variants stream \
      --caps 8 --out "$OUT/sweep_depth${depth}_rep$rep.json" > "$OUT/sweep_depth${depth}_rep$rep.log" 2>&1
    echo "depth $depth rep $rep exit $?"
  done
done
grep -h "" "$OUT"/sweep_depth*_rep1.log
(cd "$OUT" && tar czf ../stream_depth_out.tgz . && rm -rf ./* && mv ../stream_depth_out.tgz .)
