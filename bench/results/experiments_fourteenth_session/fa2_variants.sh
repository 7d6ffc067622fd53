#!/usr/bin/env bash
# Device call: builds fa2_harness.cu against each variant of the tensor-core kernel (fa2_variants.py) and runs
# it; one JSON line per (variant, case) into $OUT/fa2_variants.jsonl. Usage on the device, from the repo root:
#   bash bench/results/experiments_fourteenth_session/fa2_variants.sh [variant ...]
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; ROOT="$(cd "$HERE/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 "$HERE/fa2_variants.py" "$ROOT/src/cuda" /tmp/fa2var > /dev/null || exit 1
NAMES=${*:-base ring192 issue_first ring192_issue_first no_math}
build() {  # build NAME: /tmp/fa2var/NAME/harness
  local d=/tmp/fa2var/$1 f
  for f in fa2_decode fa2_decode_f16 fa2_decode_bf16 fa2_decode_f32 device device_buffer; do
    nvcc -arch=sm_90 -O3 -std=c++17 --expt-relaxed-constexpr -I$d -I"$ROOT/src/cpp" -c $d/$f.cu -o $d/$f.o &
  done
  nvcc -arch=sm_90 -O3 -std=c++17 -I$d -c "$HERE/fa2_harness.cu" -o $d/h.o &
  wait
  nvcc -arch=sm_90 $d/*.o -o $d/harness
}
t0=$(date +%s)
for n in $NAMES; do build $n > /tmp/fa2var/build_$n.log 2>&1 & done; wait
echo "builds $(( $(date +%s) - t0 )) s"
for n in $NAMES; do
  [ -x /tmp/fa2var/$n/harness ] || { echo "$n: build failed"; tail -5 /tmp/fa2var/build_$n.log; continue; }
  timeout 120 /tmp/fa2var/$n/harness $n | tee -a "$OUT/fa2_variants.jsonl"
done
