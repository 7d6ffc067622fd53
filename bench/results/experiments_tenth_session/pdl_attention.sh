#!/usr/bin/env bash
# Tenth session, device experiment: the GPU engine with its decode attention launched programmatically (the tree
# as committed with this script) against the same tree with that one line removed (plain attention launches),
# both built side by side; GPU engine + fa2 tests on the first; tools/engine_probe.py on a random SmolLM2-shaped
# model at depths 0, 1000 and 4000 for both. Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
rm -rf /tmp/plain && mkdir -p /tmp/plain && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/plain/
grep -q "set_programmatic(true)" /tmp/plain/src/cuda/gpu_engine.cu || { echo "patch target not found"; exit 2; }
sed -i '/set_programmatic(true)/d' /tmp/plain/src/cuda/gpu_engine.cu
t0=$(date +%s)
(python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/plain_site -C build-dir=/tmp/bplain /tmp/plain > "$OUT/build_plain.log" 2>&1; echo "plain build exit $?") &
python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
wait; echo "builds $(( $(date +%s) - t0 )) s"
cd /tmp
PYTHONPATH=/tmp/site timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" "$ROOT/tests/test_fa2_decode.py" -q -x -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest exit $?"; tail -3 "$OUT/pytest.log"
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || PYTHONPATH=/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in 0 1000 4000; do
  for variant in pdl plain; do
    pp=/tmp/site; [ $variant = plain ] && pp=/tmp/plain_site:/tmp/site
    PYTHONPATH=$pp timeout 120 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 5 --depth $depth 2>&1 \
      | tee -a "$OUT/probe_${variant}.jsonl" | grep -E "\"run\": 5|Error" | cut -c1-200 | sed "s/^/[$variant d=$depth] /"
  done
done
