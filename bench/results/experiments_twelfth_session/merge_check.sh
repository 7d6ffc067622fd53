#!/usr/bin/env bash
# Twelfth session, device call: fa2_decode with the merge kernel and the rules measured with it (the tree as
# committed with this script) against the session's base, ea86c04 (in-block merge, earlier rules; carried as
# .devcarry/base_ea86c04.tgz = git archive ea86c04 src CMakeLists.txt pyproject.toml README.md), built side by side.
# On the current tree: fa2 + GPU engine tests, the kernels suite (bench/run.py --suite kernels), the split sweep
# (tools/sweep_fa2_splits.py, both merges); on both trees: tools/engine_probe.py on a random SmolLM2-shaped model
# at depths 0, 1000, 4000 (5 runs each, the two builds alternating); last, compute-sanitizer memcheck + racecheck on
# the merge-kernel tests. Few output files (the device returns only a handful): pytest.log, bench.tgz, probe.jsonl,
# sweep.tgz, sanitize.log, build logs. Run from the repo root on the device; carry .whl and the .tgz above.
# ONLY_PROBE=1: the builds, the tests and the probe only (the last call of the session).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
rm -rf /tmp/base && mkdir -p /tmp/base && tar -xzf .devcarry/base_ea86c04.tgz -C /tmp/base
t0=$(date +%s)
(python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/base_site -C build-dir=/tmp/bbase /tmp/base > "$OUT/build_base.log" 2>&1; echo "base build exit $?") &
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/new_site -C build-dir=/tmp/bnew "$ROOT" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
wait; echo "builds $(( $(date +%s) - t0 )) s"
cd /tmp
export PYTHONPATH=/tmp/new_site:/tmp/site
timeout 150 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest exit $?"; tail -2 "$OUT/pytest.log"
if [ -z "${ONLY_PROBE:-}" ]; then
rm -rf /tmp/bench && timeout 100 python3 "$ROOT/bench/run.py" --suite kernels --out /tmp/bench > /tmp/bench.log 2>&1
echo "kernels suite exit $?"
run_dir=$(ls -d /tmp/bench/*/ | head -1); tar -czf "$OUT/bench.tgz" -C "$run_dir" report.md results.json -C /tmp bench.log
tar -xzf "$OUT/bench.tgz" -O report.md | grep -E "\| (fa2)" | grep -E "PASS|FAIL" | cut -c1-160
fi
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || timeout 60 python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in 0 1000 4000; do
  for v in new base; do
    PYTHONPATH=/tmp/${v}_site:/tmp/site timeout 60 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 5 --depth $depth 2>&1 \
      | sed "s/^/{\"build\": \"$v\", \"line\": /; s/$/}/" | tee -a "$OUT/probe.jsonl" | grep -E "\"run\": 5|Error" | cut -c1-150
  done
done
[ -n "${ONLY_PROBE:-}" ] && exit 0
timeout 150 python3 "$ROOT/tools/sweep_fa2_splits.py" --out /tmp/sweep.json --md /tmp/sweep.md --merges block kernel \
  --lengths 64 256 512 1024 2048 4096 8192 16384 65536 --iterations 40 > /tmp/sweep.log 2>&1; echo "sweep exit $?"
tar -czf "$OUT/sweep.tgz" -C /tmp sweep.json sweep.md sweep.log
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" -q \
    -p no:cacheprovider -k "kernel and ((split_counts and 61) or graph_replay or tensor_core_many)" >> "$OUT/sanitize.log" 2>&1
  echo "$tool exit $?"
done
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/sanitize.log"
