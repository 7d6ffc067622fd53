#!/usr/bin/env bash
# Eighteenth session, third device call: every K-slice cap from 8 to 16 of the T-MAC stream kernel on the down
# projections (K > 4096) of the models in ../shared/reference/models.md, plus 4096 x 4096 (16 steps) as a
# control, two rounds (tools/sweep_tmac.py), to choose the default warps per block for long rows. One tarball.
# Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
SHAPES=896x4864,2048x8192,3072x8192,1536x8960,2304x9216,4096x14336,3584x18944,4096x4096
for rep in 1 2; do
  timeout 250 python3 "$ROOT/tools/sweep_tmac.py" --variants stream --caps 8,9,10,11,12,13,14,15,16,0 \
    --shapes $SHAPES --out "$OUT/sweep_rep$rep.json" > "$OUT/sweep_rep$rep.log" 2>&1
  echo "sweep $rep exit $? ($(( $(date +%s) - t0 )) s)"
done
cat "$OUT/sweep_rep1.log" "$OUT/sweep_rep2.log"
(cd "$OUT" && tar czf ../tmac_wide_caps_out.tgz . && rm -rf ./* && mv ../tmac_wide_caps_out.tgz .)
