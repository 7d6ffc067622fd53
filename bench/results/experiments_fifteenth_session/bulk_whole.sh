#!/usr/bin/env bash
# Fifteenth session, call 3: is the "bulk" kernel slowed by the number of copies? EDGELLM_TMAC_BULK_WHOLE=1 (an
# experiment-only switch at this tree) copies each stage (its rows are contiguous in global memory) with ONE
# cp.async.bulk at the global row stride (quarter warps then hit 2-way bank conflicts where row_bytes % 128 == 0)
# instead of one copy per row at a padded stride. Fence mode 1 (every thread fences before the stage is released).
# The bulk tests under the switch, then "bulk" at cap 8 both ways.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
export EDGELLM_TMAC_BULK_FENCE=1
EDGELLM_TMAC_BULK_WHOLE=1 python3 -m pytest "$ROOT/tests/test_tmac_gpu.py" -q -x -p no:cacheprovider -k bulk 2>&1 | tail -2
for whole in 1 0; do
  echo "== whole-stage copies $whole"
  EDGELLM_TMAC_BULK_WHOLE=$whole python3 "$ROOT/tools/sweep_tmac.py" --caps 8 --variants bulk --iterations 50 \
    --out "$OUT/bulk_whole$whole.json" 2>&1 | tail -12
done
