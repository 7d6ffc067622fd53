#!/usr/bin/env bash
# Device call: build and run copy_patterns.cu (see its header), then ncu's L2/DRAM counters on one launch of each
# pattern at 16 splits. Usage on the device, from the repo root:
#   bash bench/results/experiments_fourteenth_session/copy_patterns.sh      (writes $OUT/copy_patterns.{json,ncu.txt})
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvcc -arch=sm_90 -O3 -std=c++17 "$HERE/copy_patterns.cu" -o /tmp/copy_patterns || exit 1
/tmp/copy_patterns | tee "$OUT/copy_patterns.json"
if command -v ncu > /dev/null; then
  for mode in ring_ldgsts_s3 ring_bulk_s3 block_bulk_s3 ldg_regs stream; do
    timeout 120 ncu --metrics gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_ltcfabric.sum \
      -k "regex:ring|block|ldg|stream" --launch-count 1 /tmp/copy_patterns $mode 16 1 2>&1 | grep -vE "^==PROF==|^\{|^\]" | sed "s/^/[$mode] /"
  done > "$OUT/copy_patterns_ncu.txt"
  grep -E "duration|bytes_read|hit_rate|sectors|requests" "$OUT/copy_patterns_ncu.txt"
else
  echo "no ncu on this machine"
fi
