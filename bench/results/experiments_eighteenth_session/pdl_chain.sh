#!/usr/bin/env bash
# Eighteenth session: where the GPU engine's programmatic-launch chain lets kernels start. Builds this tree (A) and
# three variants from the patches beside this script, one build folder reused (only the changed files recompile):
#   attn_top_oproj_late: the decode attention (and its split merge) trigger the o-projection at their top; the
#     o-projection triggers its successor only after its own wait (so the chain stays short behind it);
#   gemv_late: every GEMV triggers its successor after its wait instead of at its top (attention unchanged);
#   attn_top_gemv_late: both;
#   qkv_late: only the QKV GEMV (whose successor is the attention) triggers after its wait;
#   others_late: every GEMV but the QKV one triggers after its wait (call 8).
# VARIANTS and DEPTHS choose the runs (call 6: the first four at depths 0 and 1000; call 7: A, qkv_late, gemv_late
# at 0, 1000 and 4000).
# Then the programmatic-launch engine tests on each variant and tools/engine_probe.py on a random SmolLM2-shaped
# Q4_1 model (graph step, f32 activations), variants alternating, two rounds, depths 0 and 1000. One tarball.
# The patches apply to dddc6a0's src/cuda (check out that commit to repeat). Run from the repo root on the device
# (carry .whl).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/results/experiments_eighteenth_session"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
VARIANTS=${VARIANTS:-"A attn_top_oproj_late gemv_late attn_top_gemv_late"}
cd "$ROOT" && rm -rf build
for v in $VARIANTS; do
  [ $v = A ] || git apply "$HERE/pdl_$v.patch" || exit 1
  t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site_$v -C build-dir=/tmp/bshared "$ROOT" \
    > "$OUT/build_$v.log" 2>&1 || { tail -30 "$OUT/build_$v.log"; exit 1; }
  echo "build $v $(( $(date +%s) - t0 )) s"
  [ $v = A ] || git apply -R "$HERE/pdl_$v.patch" || exit 1
done
git status --short src | head
cd /tmp
for v in $VARIANTS; do
  PYTHONPATH=/tmp/site_$v:/tmp/site timeout 120 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider \
    -k "programmatic or split" > "$OUT/pytest_$v.log" 2>&1
  echo "engine tests ($v) exit $?: $(tail -1 "$OUT/pytest_$v.log")"
done
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
PYTHONPATH=/tmp/site_A:/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for round in 1 2; do
  for v in $VARIANTS; do
    for depth in ${DEPTHS:-0 1000}; do
      PYTHONPATH=/tmp/site_$v:/tmp/site timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 \
        --depth $depth --activations f32 2>&1 | grep -E "\"run\": 3|Error" | sed "s/^/[$v round $round d=$depth] /" \
        | tee -a "$OUT/probe.txt" | cut -c1-160
    done
  done
done
(cd "$OUT" && tar czf ../pdl_chain_out.tgz . && rm -rf ./* && mv ../pdl_chain_out.tgz .)
