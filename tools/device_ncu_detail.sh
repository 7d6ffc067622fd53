#!/usr/bin/env bash
# ncu detail (speed of light, warp stalls, launch stats) of one instance of each GEMV kernel of the GPU engine
# on a random SmolLM2-shaped model. Usage on the device: bash tools/device_ncu_detail.sh   Carried: .whl
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
if ! python3 -c "import edgellm_ext" 2>/dev/null || [ -n "${REBUILD:-}" ]; then
  rm -rf "$ROOT/build"; CUDAARCHS=90 python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
cd /tmp
ncu --cache-control none --clock-control none -k "regex:${KERNEL:-gemv_q8_kernel}" --launch-skip ${SKIP:-200} --launch-count ${COUNT:-4} \
  --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy --section SchedulerStats \
  python3 "$ROOT/tools/engine_probe.py" --model $M --runs 0 --new 3 > "$OUT/ncu_detail.txt" 2>&1
grep -E "gemv_q8_kernel|fa2_decode|Duration|Stall|Warp Cycles|Issued Warp|Achieved Occupancy|Registers|Memory Throughput|DRAM Throughput|No Eligible|Active Warps" "$OUT/ncu_detail.txt" | head -${LINES_OUT:-120}
