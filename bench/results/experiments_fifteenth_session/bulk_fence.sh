#!/usr/bin/env bash
# Fifteenth session, call 2: where the T-MAC "bulk" kernel's proxy fence goes (EDGELLM_TMAC_BULK_FENCE, an
# experiment-only switch read by TmacGemvOp at the tree of this call): 2 = before every bulk copy (call 1's build),
# 1 = every thread once per group before the barrier that releases the stage, 0 = none. One build, three sweeps
# of "bulk" at cap 8, and "stream" at cap 8 for reference.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
python3 "$ROOT/tools/sweep_tmac.py" --caps 8 --variants stream --iterations 50 --out "$OUT/stream.json" 2>&1 | tail -12
for mode in 2 1 0; do
  echo "== fence mode $mode"
  EDGELLM_TMAC_BULK_FENCE=$mode python3 "$ROOT/tools/sweep_tmac.py" --caps 8 --variants bulk --iterations 50 \
    --out "$OUT/bulk_fence$mode.json" 2>&1 | tail -12
done
