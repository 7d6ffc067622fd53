#!/usr/bin/env bash
# Device call: ncu counters (duration, DRAM bytes, L2 sectors and hit rate) of fa2_decode's tensor-core kernel
# and merge kernel (fa2_harness, base variant, first case: Llama-3.1-8B 65536 keys, 16 splits) beside the copy
# micro-benchmark's ring_ldgsts_s3 with constant and with hashed data; plus the micro-benchmark's timings with
# hashed data. Usage on the device, from the repo root: bash bench/results/experiments_fourteenth_session/ncu_compare.sh
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; ROOT="$(cd "$HERE/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -x /tmp/fa2var/base/harness ] || bash "$HERE/fa2_variants.sh" base > /dev/null
nvcc -arch=sm_90 -O3 -std=c++17 "$HERE/copy_patterns.cu" -o /tmp/copy_patterns || exit 1
M=gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum,sm__cycles_elapsed.avg.per_second,dram__cycles_elapsed.avg.per_second
{
  timeout 200 ncu --metrics $M -k "regex:fa2_decode_mma|fa2_merge" --launch-count 2 /tmp/fa2var/base/harness base 2>&1 | grep -vE "^==PROF==|^\{" | sed "s/^/[fa2 base] /"
  timeout 60 ncu --metrics $M -k regex:ring_ldgsts --launch-count 1 /tmp/copy_patterns ring_ldgsts_s3 16 1 2>&1 | grep -vE "^==PROF==|^\{|^\]" | sed "s/^/[copy const] /"
  COPY_RANDOM=1 timeout 60 ncu --metrics $M -k regex:ring_ldgsts --launch-count 1 /tmp/copy_patterns ring_ldgsts_s3 16 1 2>&1 | grep -vE "^==PROF==|^\{|^\]" | sed "s/^/[copy hashed] /"
} > "$OUT/ncu_compare.txt"
grep -E "mma_kernel|merge_kernel|ring_ldgsts|duration|bytes_read|hit_rate|sectors|requests|per_second" "$OUT/ncu_compare.txt" | cut -c1-150
COPY_RANDOM=1 /tmp/copy_patterns | tee "$OUT/copy_patterns_hashed.json"
