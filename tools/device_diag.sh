#!/usr/bin/env bash
# Profiler diagnosis of single kernels (issue 4): build, then ncu (speed of light, occupancy, warp states, memory,
# source counters) on one launch of each op named in OPS, and the SASS of the T-MAC and fa2 kernels, into $OUT.
# Usage on the device, from the repo root: OPS="tmac:14336,4096 fa2:32,8,128,65536" bash tools/device_diag.sh
# (CLOCKS=base locks the clocks at base for ncu; the default leaves them as they are, as METHOD.md asks;
# LAUNCH_COUNT=2 also catches a second kernel of an op, e.g. SDPA's split-KV combine.)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
if ! python3 -c "import edgellm_ext" 2>/dev/null || [ -n "${REBUILD:-}" ]; then
  rm -rf "$ROOT/build"; t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build $(( $(date +%s) - t0 )) s"
fi
cd /tmp
for spec in ${OPS:-}; do
  kind=${spec%%:*}; dims=${spec#*:}
  if [ -n "${METRICS:-}" ]; then  # stall reasons per issued instruction and pipe utilisation
    what="--metrics $(cat "$ROOT/tools/ncu_stall_metrics.txt")"
  else
    what="--section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis
      --section LaunchStats --section SchedulerStats --section SourceCounters"
  fi
  ncu --cache-control all --clock-control ${CLOCKS:-none} --launch-skip 2 --launch-count ${LAUNCH_COUNT:-1} -k "regex:${KREGEX:-tmac|fa2}" \
    $what python3 "$ROOT/tools/profile_op.py" $kind ${dims//,/ } >> "$OUT/ncu.txt" 2>&1
done
if [ -n "${SASS:-}" ]; then
  so=$(python3 -c "import edgellm_ext._core as c; print(c.__file__)" 2>/dev/null || python3 -c "import edgellm_ext, glob, os; print(glob.glob(os.path.dirname(edgellm_ext.__file__)+'/*.so')[0])")
  cuobjdump -sass "$so" | awk -v pat="$SASS" '/Function :/ {keep = ($0 ~ pat)} keep' > "$OUT/sass.txt" 2>&1
  wc -l "$OUT/sass.txt"
fi
[ -n "${METRICS:-}" ] && grep -E "^  [a-z_ ]+.*\(|stalled|pipe|issue_active|inst_executed|dram__|gpu__time|warps_active" "$OUT/ncu.txt" | sed -E 's/ +/ /g' | cut -c1-150
grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Issued Warp|No Eligible|Stall|Local" "$OUT/ncu.txt" | head -${LINES_OUT:-150}
