#!/usr/bin/env bash
# Sixteenth session: per-kernel device times (ncu, kernels serialized: no programmatic overlap) of one decode step
# of the random SmolLM2-shaped model at depth 0, with the attention fused into the o-projection and with the
# separate fa2_decode kernel; plus warp-state stalls of the fused o-projection. Needs the engine installed and
# /tmp/synth/smol_shaped.gguf (tools/device_engine.sh makes both).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; export PYTHONPATH=/tmp/site; cd /tmp
M=/tmp/synth/smol_shaped.gguf
for opt in "" --no-fused-attention; do
  timeout 150 ncu --csv --metrics gpu__time_duration.sum,smsp__inst_executed.sum --launch-skip 400 --launch-count 160 \
    python3 "$ROOT/tools/engine_probe.py" --model $M --runs 0 --new 8 --activations f32 $opt > "$OUT/ncu_times${opt:+_separate}.csv" 2>/dev/null
  python3 - "$OUT/ncu_times${opt:+_separate}.csv" "${opt:-fused}" <<'PY'
import csv, sys, collections, statistics
lines = open(sys.argv[1]).read().splitlines()
start = [i for i, l in enumerate(lines) if l.startswith('"ID"')][0]
rows = list(csv.DictReader(lines[start:]))
acc = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    name = r["Kernel Name"].replace("(anonymous namespace)::", "").replace("edgellm::cuda::", "")[:60]
    acc[name][r["Metric Name"]].append(float(r["Metric Value"].replace(",", "")))
for name, m in acc.items():
    t = m.get("gpu__time_duration.sum", [])
    i = m.get("smsp__inst_executed.sum", [])
    print(sys.argv[2], f"{name:60s} n={len(t):3d} median {statistics.median(t)/1e3:6.2f} us, {statistics.median(i)/1e3:7.1f} k warp inst")
PY
done
timeout 150 ncu --csv --section WarpStateStats --section SchedulerStats --kernel-name regex:oproj_attention --launch-skip 40 --launch-count 5 \
  python3 "$ROOT/tools/engine_probe.py" --model $M --runs 0 --new 4 --activations f32 > "$OUT/ncu_oproj_stalls.csv" 2>/dev/null
grep -E "Stall|Issued|Active Warps|Eligible" "$OUT/ncu_oproj_stalls.csv" | awk -F'","' '{print $13 " = " $15}' | sort | uniq | head -40
