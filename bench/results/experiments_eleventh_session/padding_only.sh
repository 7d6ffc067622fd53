#!/usr/bin/env bash
# Eleventh session, device check: the kernel header of 07b1e4c with only the padded accumulator rows, built in a
# copy of the tree; the same sweeps as merge_ab.sh (one round), to compare with merge_ab.sh's "old" and "new" rows
# of the previous call. As run, that header was a file beside this script; it equals, but for comments, the header
# committed in a7d0a4c, so this script now builds the tree as it is. Run from the repo root (carry .whl).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; E="$ROOT/bench/results/experiments_eleventh_session"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
rm -rf /tmp/po && mkdir -p /tmp/po && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/po/
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_po -C build-dir=/tmp/bpo /tmp/po > "$OUT/build_po.log" 2>&1 || exit 1
cd "$ROOT/tools"
PYTHONPATH=/tmp/site_po:/tmp/site timeout 100 python3 sweep_fa2_splits.py --kernels simt --models Qwen2.5-1.5B SmolLM2-135M \
  --lengths 4096 8192 --iterations 60 --out "$OUT/simt_po.json" 2>&1 | cut -c1-420
PYTHONPATH=/tmp/site_po:/tmp/site timeout 100 python3 sweep_fa2_splits.py --kernels mma --models Qwen2.5-1.5B \
  --lengths 16384 65536 --iterations 60 --out "$OUT/mma_po.json" 2>&1 | cut -c1-420
