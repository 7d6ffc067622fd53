#!/usr/bin/env bash
# Eighteenth session, device call: the T-MAC stream kernel's 16-warp instantiation (2 blocks per SM, <= 64
# registers) that the default K-slice cap takes from 17 steps of K (K > 4096) on. Build; the T-MAC stream tests
# (the wide ones included); compute-sanitizer memcheck and racecheck on the wide tests; two rounds of
# tools/sweep_tmac.py over caps 8, 12, 16 on every benchmark shape but the Llama-3.1-8B LM head (its weights take
# ~30 s to quantize on the host; it has 16 steps, so the rule leaves it at 8 warps). One tarball comes back.
# Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
t0=$(date +%s)
device_build
cd /tmp
timeout 240 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -x -p no:cacheprovider \
  -k "stream or model_shapes or deterministic or batch" > "$OUT/pytest_tmac.log" 2>&1
echo "tests exit $? ($(( $(date +%s) - t0 )) s)"; tail -2 "$OUT/pytest_tmac.log"
SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-150} device_sanitize tests/test_tmac_gpu.py "wide or default_cap"
echo "sanitizers done ($(( $(date +%s) - t0 )) s)"
SHAPES=smol_qkv,smol_o,smol_gateup,smol_down,smol_lmhead,qwen05_gateup,qwen05_down,qwen15_gateup,qwen15_down
SHAPES=$SHAPES,big_4096,big_14336x4096,llama8b_qkv,llama8b_down
for rep in 1 2; do
  timeout 200 python3 "$ROOT/tools/sweep_tmac.py" --variants stream --caps 8,12,16 --shapes $SHAPES \
    --out "$OUT/sweep_rep$rep.json" > "$OUT/sweep_rep$rep.log" 2>&1
  echo "sweep $rep exit $? ($(( $(date +%s) - t0 )) s)"
done
cat "$OUT/sweep_rep1.log" "$OUT/sweep_rep2.log"
(cd "$OUT" && tar czf ../tmac_wide_out.tgz . && rm -rf ./* && mv ../tmac_wide_out.tgz .)
