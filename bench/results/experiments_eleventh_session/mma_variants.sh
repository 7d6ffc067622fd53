#!/usr/bin/env bash
# Eleventh session, device experiment (issue 4): variants of fa2_decode's tensor-core kernel at 16384 / 65536 keys.
# ncu (first call) showed that kernel requesting every K/V sector from L2 twice (L2 hit rate ~50%, "50% excessive
# sectors"), which the cuDNN SDPA kernel does not (hit rate ~1.7%). Variants, each a sed patch of a copy of the
# committed tree, built one after another in one build directory (ninja rebuilds the changed files only):
#   base      as committed
#   l2_128    cp.async with the .L2::128B prefetch hint
#   nw8_l2_128  the hint, and 8 warps per block with a 192 KB ring (one block per SM)
#   (.L2::256B compiles to the same LTC128B SASS as .L2::128B on sm_90, so it is not a variant.)
#   VARIANTS="name=sed-expression" adds one more (applied to src/cuda/fa2_decode_kernel.cuh).
# For each: ncu memory tables of the kernel (Qwen2.5-1.5B shape, 65536 keys, 64 splits) and
# tools/sweep_fa2_splits.py on the tensor-core kernel (all four model shapes, 16384 and 65536 keys).
# Run from the repo root on the device: bash bench/results/experiments_eleventh_session/mma_variants.sh
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
H=src/cuda/fa2_decode_kernel.cuh
OLD='cp.async.cg.shared.global \[%0\], \[%1\], 16, %2;'
grep -q "$OLD" "$H" || { echo "patch target not found"; exit 2; }
SPECS=("base=s/x/x/"
       "l2_128=s/$OLD/cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;/"
       "nw8_l2_128=s/$OLD/cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;/;s/constexpr int kMmaWarps = 4;/constexpr int kMmaWarps = 8;/;s/kRingBytes = 96 \* 1024;/kRingBytes = 192 * 1024;/")
[ -n "${VARIANTS:-}" ] && SPECS+=("$VARIANTS")  # one more: "name=sed-expression"
[ -n "${ONLY:-}" ] && SPECS=("${SPECS[@]:$ONLY:1}" "${SPECS[@]:3}")
rm -rf /tmp/x && mkdir -p /tmp/x && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/x/
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}; expr=${spec#*=}
  cp "$ROOT/$H" /tmp/x/$H && sed -i "$expr" /tmp/x/$H
  echo "== $name: $(diff "$ROOT/$H" /tmp/x/$H | grep -c '^>') changed lines"
  t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --upgrade --target /tmp/site_$name -C build-dir=/tmp/bx /tmp/x \
    > "$OUT/build_$name.log" 2>&1 || { tail -20 "$OUT/build_$name.log"; continue; }
  echo "build $(( $(date +%s) - t0 )) s"
  (cd /tmp && PYTHONPATH=/tmp/site_$name ncu --cache-control all --clock-control none --launch-skip 2 --launch-count 1 \
    -k "regex:fa2_decode_mma" --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    python3 "$ROOT/tools/profile_op.py" fa2 12 2 128 65536 2 > "$OUT/ncu_$name.txt" 2>&1)
  grep -E "Duration|DRAM Throughput|L2 Hit Rate|excessive" "$OUT/ncu_$name.txt" | sed -E 's/ +/ /g' | cut -c1-140
  (cd "$ROOT/tools" && PYTHONPATH=/tmp/site_$name timeout 200 python3 sweep_fa2_splits.py --kernels mma \
    --lengths 16384 65536 --iterations 40 --out "$OUT/sweep_$name.json" 2>&1 | tail -8 | cut -c1-220)
done
