#!/usr/bin/env bash
# Seventeenth session: A/B of the engine GEMV's residual prefetch (AddResidual epilogue: the residual loaded before
# the dot products instead of after the reduction). Carried: .whl, .devcarry/ab (gemv_q8.cuh of the base commit).
# A_CUH (a file under .devcarry/ab, default gemv_q8_base.cuh) is A's gemv_q8.cuh: call 6 compared the base commit
# with the residual prefetch; call 7 (A_CUH=gemv_q8_residual.cuh) the residual prefetch alone with it plus the
# skipped barrier after the last round's K-split reduction.
# Builds B = this tree and A = this tree with the base gemv_q8.cuh into separate --target folders, runs the GPU
# engine tests on B, then tools/engine_probe.py on a random SmolLM2-shaped Q4_1 model (graph step, f32
# activations: the engine's defaults), alternating A and B, three rounds, depths 0 and 1000. Outputs: one tarball.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
rm -rf /tmp/A /tmp/siteA /tmp/siteB && cp -r "$ROOT" /tmp/A && rm -rf /tmp/A/build /tmp/A/.devcarry /tmp/A/.whl
cp "$ROOT/.devcarry/ab/${A_CUH:-gemv_q8_base.cuh}" /tmp/A/src/cuda/gemv_q8.cuh
for v in B A; do
  src=$ROOT; [ $v = A ] && src=/tmp/A
  rm -rf "$src/build"; t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/site$v "$src" > "$OUT/build_$v.log" 2>&1 || { tail -30 "$OUT/build_$v.log"; exit 1; }
  echo "build $v $(( $(date +%s) - t0 )) s"
done
cd /tmp
PYTHONPATH=/tmp/siteB:/tmp/site timeout 300 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/pytest_engine_B.log" 2>&1
echo "engine tests (B) exit $?"; tail -2 "$OUT/pytest_engine_B.log"
if [ -n "${RACECHECK:-}" ]; then  # B under racecheck (the barrier change), a subset of the engine tests
  PYTHONPATH=/tmp/siteB:/tmp/site timeout 200 compute-sanitizer --tool racecheck --error-exitcode 9 python3 -m pytest \
    "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider -k "programmatic or llama-types0" > "$OUT/racecheck_B.log" 2>&1
  echo "racecheck (B) exit $?"; grep -E "RACECHECK SUMMARY|passed|failed" "$OUT/racecheck_B.log" | tail -2
fi
mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
PYTHONPATH=/tmp/siteB:/tmp/site python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
for round in 1 2 3; do
  for v in A B; do
    for depth in 0 1000; do
      PYTHONPATH=/tmp/site$v:/tmp/site timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --runs 3 \
        --depth $depth --activations f32 2>&1 | grep -E "\"run\": 3|Error" | sed "s/^/[$v round $round d=$depth] /" \
        | tee -a "$OUT/ab_probe.txt" | cut -c1-200
    done
  done
done
(cd "$OUT" && tar czf ../ab_out.tgz . && rm -rf ./* && mv ../ab_out.tgz .)
