#!/usr/bin/env bash
# Fourteenth session: with the tensor-core kernel's ring aligned (fa2_decode_kernel.cuh), does the GPU engine's
# decode attention still need the SIMT override up to 8192-key buckets (kDecodeSimtMaxKeys in gpu_engine.cu)?
# Two builds of the working tree in one call: "simt" as committed, "auto" with kDecodeSimtMaxKeys = 0 (fa2's
# default variant: tensor cores beyond 4096 keys for GQA groups >= 3). Random SmolLM2-shaped model
# (tools/engine_probe.py --synthetic), decode tok/s at DEPTHS, alternating builds, ROUNDS rounds; then
# tests/test_fa2_decode.py and the engine's GPU tests on the "simt" build.
# Carry: .whl. SKIP_BUILD=1 reuses a warm machine's /tmp/{simt,auto}_site.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export CUDAARCHS=90 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
if [ -z "${SKIP_BUILD:-}" ]; then
  rm -rf /tmp/auto_tree && mkdir -p /tmp/auto_tree && cp -r "$ROOT/src" "$ROOT/CMakeLists.txt" "$ROOT/pyproject.toml" "$ROOT/README.md" /tmp/auto_tree/
  sed -i 's/^constexpr int kDecodeSimtMaxKeys = 8192;/constexpr int kDecodeSimtMaxKeys = 0;/' /tmp/auto_tree/src/cuda/gpu_engine.cu
  grep -q "kDecodeSimtMaxKeys = 0;" /tmp/auto_tree/src/cuda/gpu_engine.cu || { echo "patch failed"; exit 1; }
  t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/auto_site -C build-dir=/tmp/b_auto /tmp/auto_tree > "$OUT/build_auto.log" 2>&1 &
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/simt_site -C build-dir=/tmp/b_simt "$ROOT" > "$OUT/build_simt.log" 2>&1
  wait; echo "builds $(( $(date +%s) - t0 )) s"
fi
M=/tmp/synth/smol_shaped.gguf; mkdir -p /tmp/synth
[ -f $M ] || PYTHONPATH=/tmp/simt_site:/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for depth in ${DEPTHS:-4096 7000}; do
  for round in $(seq 1 ${ROUNDS:-2}); do
    for build in auto simt; do
      PYTHONPATH=/tmp/${build}_site:/tmp/site timeout 100 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 --depth $depth 2>&1 \
        | grep -E '"run": 3|Error' | cut -c1-120 | sed "s/^/[$build d=$depth r=$round] /" | tee -a "$OUT/probe.txt"
    done
  done
done
if [ -z "${SKIP_TESTS:-}" ]; then
  cd /tmp && PYTHONPATH=/tmp/simt_site:/tmp/site timeout 240 python3 -m pytest "$ROOT/tests/test_fa2_decode.py" "$ROOT/tests/test_engine_gpu.py" -q -x -p no:cacheprovider 2>&1 | tail -3
fi
