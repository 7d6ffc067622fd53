#!/usr/bin/env bash
# Tenth session, second device experiment: three builds of the tree side by side on a random SmolLM2-shaped model
# (tools/engine_probe.py, depths 0, 1000, 4000, 5 runs): "pdl" as committed with this script (the decode attention
# launched programmatically, triggering its dependents at its top), "pdl_late" (the same without the attention's
# griddepcontrol.launch_dependents: the o-projection then launches when the attention ends) and "plain" (the
# attention plain-launched). Run from the repo root on the device (carry .whl).
set -uo pipefail
ROOT="$(pwd)"; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
for v in plain pdl_late; do rm -rf /tmp/$v && mkdir -p /tmp/$v && cp -r CMakeLists.txt pyproject.toml README.md src /tmp/$v/; done
sed -i '/set_programmatic(true)/d' /tmp/plain/src/cuda/gpu_engine.cu
sed -i '/^ *pdl_trigger();$/d' /tmp/pdl_late/src/cuda/fa2_decode_kernel.cuh
grep -c "pdl_trigger" /tmp/pdl_late/src/cuda/fa2_decode_kernel.cuh
t0=$(date +%s)
for v in plain pdl_late; do
  (python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/${v}_site -C build-dir=/tmp/b$v /tmp/$v > "$OUT/build_$v.log" 2>&1; echo "$v build exit $?") &
done
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/pdl_site -C build-dir=/tmp/bpdl "$ROOT" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
wait; echo "builds $(( $(date +%s) - t0 )) s"
cd /tmp
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || PYTHONPATH=/tmp/pdl_site:/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in 0 1000 4000; do
  for v in pdl pdl_late plain; do
    PYTHONPATH=/tmp/${v}_site:/tmp/site timeout 120 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 5 --depth $depth 2>&1 \
      | tee -a "$OUT/probe_${v}.jsonl" | grep -E "\"run\": 5|Error" | cut -c1-130 | sed "s/^/[$v d=$depth] /"
  done
done
