#!/usr/bin/env bash
# Thirteenth session: the GPU engine's decode attention at depth 4096 with the tensor-core kernel (base: fa2's
# default beyond 4096 keys) vs the SIMT kernel (new: kDecodeSimtMaxKeys in src/cuda/gpu_engine.cu). Both builds in
# one call, random SmolLM2-shaped model (tools/engine_probe.py --synthetic), decode tok/s at depths 4096 / 7000,
# 5 runs each, alternating builds; then the GPU engine tests on the new build.
# Carry: .whl .devcarry/base.tgz (git archive of the base commit's src CMakeLists.txt pyproject.toml README.md).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export CUDAARCHS=90 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
if [ -z "${SKIP_BUILD:-}" ]; then  # SKIP_BUILD=1: a warm machine's /tmp/{base,new}_site from an earlier call
rm -rf /tmp/base_tree && mkdir -p /tmp/base_tree && tar -C /tmp/base_tree -xzf "$ROOT/.devcarry/base.tgz"
t0=$(date +%s)
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/base_site -C build-dir=/tmp/b_base /tmp/base_tree > "$OUT/build_base.log" 2>&1 &
python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/new_site -C build-dir=/tmp/b_new "$ROOT" > "$OUT/build_new.log" 2>&1
wait; echo "builds $(( $(date +%s) - t0 )) s"
fi
M=/tmp/synth/smol_shaped.gguf; mkdir -p /tmp/synth
PYTHONPATH=/tmp/new_site:/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in ${DEPTHS:-4096 7000}; do
  for round in $(seq 1 ${ROUNDS:-2}); do
    for build in base new; do
      PYTHONPATH=/tmp/${build}_site:/tmp/site timeout 100 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth 2>&1 \
        | grep -E '"run": 3|Error' | cut -c1-120 | sed "s/^/[$build d=$depth r=$round] /" | tee -a "$OUT/probe.txt"
    done
  done
done
if [ -z "${SKIP_TESTS:-}" ]; then
  cd /tmp && PYTHONPATH=/tmp/new_site:/tmp/site timeout 150 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider \
    -k "split_attention or tiny_models or programmatic or greedy" 2>&1 | tail -3
fi
