#!/usr/bin/env bash
# Sixteenth session, call 3: the attention fused into the o-projection, variants set by experiment-only
# environment variables of the engine build under test (EDGELLM_EXP_PRE_ROWS: K/V rows staged per kv head;
# EDGELLM_EXP_CARVEOUT: cudaFuncAttributePreferredSharedMemoryCarveout of every engine GEMV kernel), against the
# separate fa2_decode kernel; random SmolLM2-shaped model, f32 activations, tok/s and a stage trace per variant.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
if [ -z "${SKIP_BUILD:-}" ]; then
  rm -rf "$ROOT/build"; t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build $(( $(date +%s) - t0 )) s"
fi
cd /tmp; mkdir -p /tmp/synth; M=/tmp/synth/smol_shaped.gguf
[ -f $M ] || python3 "$ROOT/tools/engine_probe.py" --synthetic /tmp/synth --runs 0 > /dev/null
probe() {  # label, env..., then probe args after --
  local label=$1; shift
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" timeout 90 python3 "$ROOT/tools/engine_probe.py" --model $M --activations f32 "$@" 2>&1 | grep -E "\"run\": 3|stage|Error" | \
    python3 -c "import sys, json
for l in sys.stdin:
    try: d = json.loads(l)
    except Exception: print('$label', l.strip()[:300]); continue
    if 'graph_stage_trace_us' in d: print('$label trace', json.dumps(d['graph_stage_trace_us']))
    else: print('$label', 'd=%d' % d['prompt'], d['decode_tok_s'], 'tok/s', d['kernels_per_step'], 'kernels')" | tee -a "$OUT/variants.txt"
}
for round in 1 2; do
  for depth in 0 100; do
    probe "separate" X=1 -- --runs 3 --depth $depth --no-fused-attention
    probe "fused pre128" X=1 -- --runs 3 --depth $depth
    probe "fused pre0" EDGELLM_EXP_PRE_ROWS=0 -- --runs 3 --depth $depth
    probe "fused pre128 carve100" EDGELLM_EXP_CARVEOUT=100 -- --runs 3 --depth $depth
    probe "fused pre0 carve100" EDGELLM_EXP_PRE_ROWS=0 EDGELLM_EXP_CARVEOUT=100 -- --runs 3 --depth $depth
    probe "separate carve100" EDGELLM_EXP_CARVEOUT=100 -- --runs 3 --depth $depth --no-fused-attention
  done
done
probe "separate" X=1 -- --runs 1 --depth 0 --trace --no-fused-attention
probe "fused pre128" X=1 -- --runs 1 --depth 0 --trace
probe "fused pre0" EDGELLM_EXP_PRE_ROWS=0 -- --runs 1 --depth 0 --trace
probe "fused pre128 carve100" EDGELLM_EXP_CARVEOUT=100 -- --runs 1 --depth 0 --trace
probe "fused pre0 carve100" EDGELLM_EXP_PRE_ROWS=0 EDGELLM_EXP_CARVEOUT=100 -- --runs 1 --depth 0 --trace
