#!/usr/bin/env bash
# Sixteenth session, call 8: where the graph step's GEMV kernels spend their per-warp chains (ncu, kernels
# serialized): instruction counts per warp, warp-state stall reasons and the executed instruction mix of each
# decode GEMV (qkv, o-proj, gate/up, down) and fa2_decode, random SmolLM2-shaped model, depth 0, f32 activations.
# Usage on the device from the repo root (carry .whl): bash bench/results/experiments_sixteenth_session/ncu_gemv_stalls.sh
# SKIP_BUILD=1: edgellm_ext already installed; CACHE_CONTROL=none: ncu does not flush the caches between kernels
# (default "all", ncu's own default); outputs get the suffix _$CACHE_CONTROL.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"  # OUT, device_build (wheels into /tmp/site, then the package)
if [ -z "${SKIP_BUILD:-}" ]; then device_build; else export PYTHONPATH=/tmp/site; fi
CC=${CACHE_CONTROL:-all}
cd /tmp; mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
timeout 300 ncu --csv --cache-control $CC --section WarpStateStats --section InstructionStats --section LaunchStats \
  --metrics "smsp__inst_executed.sum,gpu__time_duration.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" --launch-skip 400 --launch-count 12 \
  python3 "$ROOT/tools/engine_probe.py" --model $M --runs 0 --new 6 --activations f32 > "$OUT/ncu_gemv_$CC.csv" 2>/dev/null
echo "ncu exit $?"
python3 - "$OUT/ncu_gemv_$CC.csv" <<'PY' | tee "$OUT/ncu_gemv_summary_$CC.txt"
import csv, sys, collections, re
lines = open(sys.argv[1]).read().splitlines()
start = [i for i, l in enumerate(lines) if l.startswith('"ID"')][0]
rows = list(csv.DictReader(lines[start:]))
per = collections.OrderedDict()
for r in rows:
    name = r["Kernel Name"]
    m = re.search(r"gemv_q8_kernel<(\d), (\d)", name)
    kind = {("0", "3"): "qkv", ("1", "1"): "o-proj", ("0", "2"): "gate/up", ("2", "1"): "down", ("0", "0"): "head"}.get(m.groups(), name[:30]) if m else ("fa2_decode" if "fa2" in name else name[:30])
    d = per.setdefault(kind, collections.defaultdict(list))
    try:
        d[r["Metric Name"]].append(float(r["Metric Value"].replace(",", "")))
    except ValueError:
        pass
for kind, d in per.items():
    med = lambda k: sorted(d[k])[len(d[k]) // 2] if d.get(k) else float("nan")
    warps = med("Grid Size") * med("Block Size") / 32 if d.get("Grid Size") else float("nan")
    print(f"{kind}: {med('gpu__time_duration.sum') / 1e3:.2f} us, {med('smsp__inst_executed.sum') / 1e3:.0f} k warp inst, "
          f"grid {med('Grid Size'):.0f} x {med('Block Size'):.0f}, {med('smsp__inst_executed.sum') / warps:.0f} inst per warp, "
          f"{med('Warp Cycles Per Issued Instruction'):.1f} cycles per issue")
    stalls = {k: med(k) for k in d if k.startswith("smsp__average_warps_issue_stalled") or "Stall" in k}
    top = sorted(((v, k) for k, v in stalls.items() if v == v), reverse=True)[:6]
    for v, k in top:
        print(f"    {k}: {v:.2f}")
PY
