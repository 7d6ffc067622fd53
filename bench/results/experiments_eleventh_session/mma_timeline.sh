#!/usr/bin/env bash
# Eleventh session, device experiment: builds a copy of the tree with mma_timeline_patch.py's stamps in the
# tensor-core kernel and runs mma_timeline.py. Run from the repo root on the device.
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; E="$ROOT/bench/results/experiments_eleventh_session"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
rm -rf /tmp/tl && mkdir -p /tmp/tl && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/tl/
python3 "$E/mma_timeline_patch.py" /tmp/tl/src/cuda/fa2_decode_kernel.cuh || exit 2
t0=$(date +%s)
python3 -m pip install -q --no-build-isolation --no-deps --upgrade --target /tmp/site_tl -C build-dir=/tmp/btl /tmp/tl \
  > "$OUT/build_tl.log" 2>&1 || { tail -20 "$OUT/build_tl.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
cd /tmp && PYTHONPATH=/tmp/site_tl timeout 240 python3 "$E/mma_timeline.py" "$OUT/mma_timeline.json"
