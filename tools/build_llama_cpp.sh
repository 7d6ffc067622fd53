#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` (CUDA) from the tarball made by tools/pack_llama_cpp.sh, on the GPU machine.
#
# Usage: tools/build_llama_cpp.sh SRC_TARBALL BUILD_DIR
#   Runs in the foreground; for a build that must outlive one device call:
#     setsid nohup tools/build_llama_cpp.sh .devcarry/llama_cpp_src.tar.xz /tmp/llama_build >/dev/null 2>&1 &
#   and in a later call check BUILD_DIR/DONE (success; holds the binary path and the elapsed seconds) or
#   BUILD_DIR/FAILED (holds the exit code and the step that failed). Everything is logged to BUILD_DIR/build.log.
#   The binary: BUILD_DIR/build/bin/llama-bench (shared libraries next to it, found through its RPATH, so leave
#   BUILD_DIR where it is).
#
# Environment overrides (defaults in brackets):
#   LLAMA_CUDA_ARCHS [90]   CMAKE_CUDA_ARCHITECTURES: one arch (H100/H200 = 90) keeps the compile short.
#   LLAMA_GGML_CUDA  [ON]   OFF only for the local CPU-only check of the trimmed tree.
#   LLAMA_JOBS       [nproc] parallel compile jobs.
#
# Configuration: Release, ggml defaults otherwise (llama.cpp as users build it: CUDA graphs on, flash-attention
# CUDA kernels built, so `-fa 1` works; GGML_NATIVE on, the CPU backend is tuned for the build host, as a user's
# own build is). Turned off, none of it on the measured path (model load + decode/prefill through ggml-cuda):
#   LLAMA_BUILD_TESTS/EXAMPLES/SERVER/APP=OFF  other programs; not built, not run.
#   LLAMA_OPENSSL=OFF (and no curl)             only model downloads over HTTPS use it; there is no network there.
#   LLAMA_BUILD_COMMIT/NUMBER are passed in: there is no .git in the carried tree, and if the tree is unpacked
#     inside another git checkout, llama.cpp's cmake would otherwise record THAT checkout's commit.
# Only the `llama-bench` target (and what it links) is built.
set -uo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SRC_TARBALL BUILD_DIR" >&2
    exit 2
fi
SRC_TARBALL="$(realpath -m "$1")"
BUILD_DIR="$(mkdir -p "$2" && cd "$2" && pwd)"
CUDA_ARCHS="${LLAMA_CUDA_ARCHS:-90}"
GGML_CUDA="${LLAMA_GGML_CUDA:-ON}"
JOBS="${LLAMA_JOBS:-$(nproc)}"
LOG="$BUILD_DIR/build.log"

rm -f "$BUILD_DIR/DONE" "$BUILD_DIR/FAILED"
: > "$LOG"
START_S=$(date +%s)

fail() {  # fail STEP CODE
    local elapsed=$(( $(date +%s) - START_S ))
    printf 'exit_code=%s\nstep=%s\nelapsed_s=%s\nlog=%s\n' "$2" "$1" "$elapsed" "$LOG" > "$BUILD_DIR/FAILED"
    echo "llama.cpp build FAILED at step '$1' (exit $2) after ${elapsed} s; see $LOG" | tee -a "$LOG" >&2
    exit "$2"
}

step() {  # step NAME CMD...: run CMD with its output appended to the log
    local name="$1"; shift
    echo "=== $name: $*" >> "$LOG"
    "$@" >> "$LOG" 2>&1
    local rc=$?
    [[ $rc -eq 0 ]] || fail "$name" "$rc"
}

[[ -f "$SRC_TARBALL" ]] || fail "check tarball ($SRC_TARBALL missing)" 1
for tool in cmake ninja; do
    command -v "$tool" >/dev/null || fail "check $tool (not on PATH)" 1
done
if [[ "$GGML_CUDA" == "ON" ]] && ! command -v nvcc >/dev/null; then
    # CMake's CUDA detection also looks in /usr/local/cuda; add it to PATH if nvcc is only there.
    [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="/usr/local/cuda/bin:$PATH" || fail "check nvcc (not found)" 1
fi

SRC_DIR="$BUILD_DIR/src"
rm -rf "$SRC_DIR" && mkdir -p "$SRC_DIR"
if command -v xz >/dev/null; then
    step untar tar -xJf "$SRC_TARBALL" -C "$SRC_DIR"
else  # no xz program: Python's lzma module reads the same archive
    step "untar (python)" python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$SRC_TARBALL" "$SRC_DIR"
fi
LLAMA_DIR="$SRC_DIR/llama.cpp"
COMMIT="$(cat "$LLAMA_DIR/EDGELLM_LLAMA_CPP_COMMIT" 2>/dev/null || echo unknown)"

{
    echo "llama.cpp commit $COMMIT; GGML_CUDA=$GGML_CUDA CUDA archs $CUDA_ARCHS; jobs $JOBS"
    command -v nvcc >/dev/null && nvcc --version | tail -2
    cmake --version | head -1
} >> "$LOG" 2>&1

CMAKE_ARGS=(
    -S "$LLAMA_DIR" -B "$BUILD_DIR/build" -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_CUDA="$GGML_CUDA"
    -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS"
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_COMMIT="$COMMIT" -DLLAMA_BUILD_NUMBER=0
)
EXTRA_LIB_DIRS=()

try_step() {  # like step, but returns the exit code instead of failing
    echo "=== $1: ${*:2}" >> "$LOG"
    "${@:2}" >> "$LOG" 2>&1
}

cache_notfound() {  # cache_notfound VAR: true if CMake looked for VAR and did not find it
    grep -q "^$1:FILEPATH=.*NOTFOUND" "$BUILD_DIR/build/CMakeCache.txt" 2>/dev/null
}

# Where the CUDA toolkit has no cuBLAS (e.g. nvcc from a minimal toolkit, cuBLAS from PyPI's nvidia-cublas as
# PyTorch installs it; the case on our CPU machine, possibly on the GPU one), point CMake at the pip copy. Same
# cuBLAS library either way; it is only used for the large matrix products of prefill (pp), not decode's.
pip_cuda_dir_with() {  # pip_cuda_dir_with RELPATH: first nvidia/<pkg> dir from Python that holds RELPATH
    local py
    for py in python3 python; do
        command -v "$py" >/dev/null || continue
        "$py" - "$1" <<'PYEOF' 2>/dev/null && return 0
import glob, os, sys
try:
    import nvidia
except ImportError:
    sys.exit(1)
for root in list(nvidia.__path__):
    hits = sorted(glob.glob(os.path.join(root, "*", sys.argv[1])))
    if hits:
        print(os.path.dirname(os.path.dirname(hits[0])))
        sys.exit(0)
sys.exit(1)
PYEOF
    done
    return 1
}

if ! try_step configure cmake "${CMAKE_ARGS[@]}"; then
    if [[ "$GGML_CUDA" != "ON" ]]; then
        fail configure 1
    fi
    retry=0
    if cache_notfound CUDA_cublas_LIBRARY; then
        pipdir="$(pip_cuda_dir_with include/cublas_v2.h)" || fail "configure (cuBLAS not in the CUDA toolkit nor in Python's nvidia packages)" 1
        cublas="$(ls "$pipdir"/lib/libcublas.so* 2>/dev/null | head -1)"
        cublaslt="$(ls "$pipdir"/lib/libcublasLt.so* 2>/dev/null | head -1)"
        [[ -n "$cublas" && -n "$cublaslt" ]] || fail "configure (no libcublas/libcublasLt in $pipdir/lib)" 1
        echo "cuBLAS not in the CUDA toolkit: using $pipdir (Python package nvidia-cublas)" | tee -a "$LOG"
        CMAKE_ARGS+=(-DCUDA_cublas_LIBRARY="$cublas" -DCUDA_cublasLt_LIBRARY="$cublaslt"
                     -DCMAKE_CUDA_FLAGS="-isystem $pipdir/include" -DCMAKE_CXX_FLAGS="-isystem $pipdir/include")
        EXTRA_LIB_DIRS+=("$pipdir/lib")
        retry=1
    fi
    if cache_notfound CUDA_cuda_driver_LIBRARY; then
        # No stub libcuda.so in the toolkit: link against the driver's own libcuda.so.1 where there is one.
        drv="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/{print $NF; exit}')"
        for cand in /usr/lib/x86_64-linux-gnu/libcuda.so.1 /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib64/libcuda.so.1; do
            [[ -z "$drv" && -e "$cand" ]] && drv="$cand"
        done
        if [[ -n "$drv" ]]; then
            echo "no libcuda.so stub in the CUDA toolkit: linking the driver's $drv" | tee -a "$LOG"
            CMAKE_ARGS+=(-DCUDA_cuda_driver_LIBRARY="$drv")
        else
            # Only on a machine without a driver (our CPU machine, to check that the code compiles): ggml's
            # legacy CUDA memory pool instead of the virtual-memory one. A binary built so is NOT what users run.
            echo "WARNING: no libcuda anywhere: GGML_CUDA_NO_VMM=ON (compile check only, do not benchmark)" | tee -a "$LOG"
            CMAKE_ARGS+=(-DGGML_CUDA_NO_VMM=ON)
        fi
        retry=1
    fi
    [[ $retry -eq 1 ]] || fail configure 1
    step "configure (retry)" cmake "${CMAKE_ARGS[@]}"
fi

[[ "${LLAMA_CONFIGURE_ONLY:-0}" == "1" ]] && { echo "configured (LLAMA_CONFIGURE_ONLY=1): $BUILD_DIR/build"; exit 0; }

step build cmake --build "$BUILD_DIR/build" --target llama-bench -j "$JOBS"

REAL_BIN="$BUILD_DIR/build/bin/llama-bench"
[[ -x "$REAL_BIN" ]] || fail "find binary ($REAL_BIN)" 1
# The binary to run: a wrapper that adds the library folders found above (pip cuBLAS) to LD_LIBRARY_PATH, so a
# caller needs no environment of its own. exec keeps the process id (a timeout can kill it as before).
BIN="$BUILD_DIR/llama-bench"
{
    echo '#!/bin/sh'
    echo '# written by tools/build_llama_cpp.sh'
    if [[ ${#EXTRA_LIB_DIRS[@]} -gt 0 ]]; then
        printf 'LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\nexport LD_LIBRARY_PATH\n' \
            "$(IFS=:; echo "${EXTRA_LIB_DIRS[*]}")"
    fi
    printf 'exec "%s" "$@"\n' "$REAL_BIN"
} > "$BIN"
chmod +x "$BIN"
ELAPSED=$(( $(date +%s) - START_S ))
printf 'binary=%s\nreal_binary=%s\nelapsed_s=%s\ncommit=%s\nggml_cuda=%s\ncuda_archs=%s\njobs=%s\n' \
    "$BIN" "$REAL_BIN" "$ELAPSED" "$COMMIT" "$GGML_CUDA" "$CUDA_ARCHS" "$JOBS" > "$BUILD_DIR/DONE.tmp"
mv "$BUILD_DIR/DONE.tmp" "$BUILD_DIR/DONE"
echo "llama.cpp llama-bench built in ${ELAPSED} s: $BIN" | tee -a "$LOG"
