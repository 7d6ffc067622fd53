#!/usr/bin/env bash
# Twelfth session, device call: the fa2 merge kernel with the new split / variant rules (the tree as committed with
# this script) against the session's base, ea86c04 (in-block merge, earlier rules; carried as
# .devcarry/base_ea86c04.tgz = git archive ea86c04 src CMakeLists.txt pyproject.toml README.md), built side by side.
# On the current tree: fa2 + GPU engine tests, the kernels suite (bench/run.py --suite kernels), the split sweep at
# 64..256 keys (both merges); on both trees: tools/engine_probe.py on a random SmolLM2-shaped model at depths 0,
# 1000, 4000 (5 runs each, the two builds alternating); last, compute-sanitizer memcheck + racecheck on the
# merge-kernel tests. Run from the repo root on the device; carry .whl and .devcarry.
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
timeout 150 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest exit $?"; tail -2 "$OUT/pytest.log"
rm -rf /tmp/bench && timeout 100 python3 "$ROOT/bench/run.py" --suite kernels --out /tmp/bench > "$OUT/bench.log" 2>&1
echo "kernels suite exit $?"
run_dir=$(ls -d /tmp/bench/*/ | head -1); mkdir -p "$OUT/bench" && cp "$run_dir/report.md" "$run_dir/results.json" "$OUT/bench/"
grep -E "\| (fa2)" "$OUT/bench/report.md" | grep -E "PASS|FAIL" | cut -c1-160
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || timeout 60 python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in 0 1000 4000; do
  for v in new base; do
    PYTHONPATH=/tmp/${v}_site:/tmp/site timeout 60 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 5 --depth $depth 2>&1 \
      | tee -a "$OUT/probe_${v}.jsonl" | grep -E "\"run\": 5|Error" | cut -c1-130 | sed "s/^/[$v d=$depth] /"
  done
done
timeout 60 python3 "$ROOT/tools/sweep_fa2_splits.py" --out "$OUT/short_sweep.json" --merges block kernel --lengths 64 128 256 \
  --iterations 40 > "$OUT/short_sweep.log" 2>&1; echo "short sweep exit $?"
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" -q \
    -p no:cacheprovider -k "kernel and ((split_counts and 61) or graph_replay or tensor_core_many)" > "$OUT/$tool.log" 2>&1
  echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/$tool.log" | tail -3
done
