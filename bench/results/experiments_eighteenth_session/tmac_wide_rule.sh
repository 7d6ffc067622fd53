#!/usr/bin/env bash
# Eighteenth session, second device call: the stream kernel's default for long rows (from 17 steps of K: the
# fewest warps, 9..16, that give each warp as few items per tile as 16 warps would). Build; the wide and model-shape
# T-MAC tests; two rounds of tools/sweep_tmac.py over caps 8, 9, 10, 12, 14, 16 and 0 (the default) on the shapes
# with K > 4096 and the two with 16 steps; then the kernels suite (bench/run.py --suite kernels; pass
# EDGELLM_GIT_COMMIT). One tarball comes back. Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
timeout 240 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -x -p no:cacheprovider \
  -k "wide or default_cap or model_shapes or ragged" > "$OUT/pytest_tmac.log" 2>&1
echo "tests exit $? ($(( $(date +%s) - t0 )) s)"; tail -2 "$OUT/pytest_tmac.log"
for rep in 1 2; do
  timeout 200 python3 "$ROOT/tools/sweep_tmac.py" --variants stream --caps 8,9,10,12,14,16,0 \
    --shapes qwen05_down,qwen15_down,llama8b_down,big_4096,llama8b_qkv \
    --out "$OUT/sweep_rep$rep.json" > "$OUT/sweep_rep$rep.log" 2>&1
  echo "sweep $rep exit $? ($(( $(date +%s) - t0 )) s)"
done
cat "$OUT/sweep_rep1.log" "$OUT/sweep_rep2.log"
if [ -z "${SKIP_KERNELS:-}" ]; then device_kernels_suite; echo "($(( $(date +%s) - t0 )) s)"; fi
(cd "$OUT" && tar czf ../tmac_wide_rule_out.tgz . && rm -rf ./* && mv ../tmac_wide_rule_out.tgz .)
