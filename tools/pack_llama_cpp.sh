#!/usr/bin/env bash
# Pack a trimmed llama.cpp source tree (the one vendored by llama-cpp-python 0.3.36) for the GPU machine.
#
# Why: the GPU machine has no internet and no package registry, and a device call carries at most 64 MiB, most of
# it taken by the model. So we carry only what building `llama-bench` (CPU + CUDA backends) needs.
#
# Usage: tools/pack_llama_cpp.sh [OUT_DIR]        (default OUT_DIR: .devcarry, git-ignored)
# Writes:
#   OUT_DIR/llama_cpp_src.tar.xz          the trimmed tree, top folder `llama.cpp/`
#   OUT_DIR/llama_cpp_src.tar.xz.sha256   sha256sum line for it
#   OUT_DIR/llama_cpp_src.version         key=value: pypi_version, llama_cpp_commit, sdist_sha256, tarball sha/size
#
# Kept: top CMakeLists.txt, LICENSE, licenses/, cmake/, include/, src/, common/, vendor/ (all of it: common links
# cpp-httplib/nlohmann/sheredom and vendor/CMakeLists.txt adds every subfolder), ggml/ with only the core, CPU and
# CUDA backends (ggml_add_backend() only descends into enabled backends, so the dropped ones are never looked
# at), tools/llama-bench/.
# Dropped: models/ (75 MB of test vocabularies), docs/, tests/, examples/, pocs/, app/, benches/, gguf-py/,
# conversion scripts, media/, .git*, every other tool, every other ggml backend.
#
# One patch (the only edit to llama.cpp's files): tools/CMakeLists.txt add_subdirectory()s every tool
# unconditionally (batched-bench, quantize, mtmd, ...), with no option to turn single tools off, so it is
# replaced by a copy that keeps its preamble and adds only llama-bench. llama-bench's own CMakeLists.txt and
# sources are unchanged.
set -euo pipefail

PYPI_VERSION=0.3.36
# From the sdist's CHANGELOG.md, "## [0.3.36] - feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098";
# checked against the extracted CHANGELOG below so a different sdist cannot be packed under this name.
LLAMA_CPP_COMMIT=0c1e57098

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$(mkdir -p "${1:-$REPO_ROOT/.devcarry}" && cd "${1:-$REPO_ROOT/.devcarry}" && pwd)"
WORK="$(mktemp -d /tmp/pack_llama_cpp.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "downloading llama-cpp-python==$PYPI_VERSION sdist"
# --no-build-isolation: pip prepares the sdist's metadata with the scikit-build-core already installed; with
# isolation and --no-binary :all: it would first build CMake itself from source (tens of minutes).
python3 -m pip download --quiet --no-binary :all: --no-deps --no-build-isolation \
    "llama-cpp-python==$PYPI_VERSION" -d "$WORK/dl"
SDIST="$(ls "$WORK"/dl/llama_cpp_python-"$PYPI_VERSION".tar.gz)"
SDIST_SHA256="$(sha256sum "$SDIST" | cut -d' ' -f1)"
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$PYPI_VERSION/vendor/llama.cpp"
CHANGELOG="$WORK/llama_cpp_python-$PYPI_VERSION/CHANGELOG.md"

# The first "llama.cpp@<hash>" after the "## [0.3.36]" heading must be the commit we record.
found="$(awk -v v="## [$PYPI_VERSION]" '$0==v{on=1; next} on && /^## \[/{exit} on && match($0, /llama\.cpp@[0-9a-f]+/){print substr($0, RSTART+10, RLENGTH-10); exit}' "$CHANGELOG")"
if [[ "$found" != "$LLAMA_CPP_COMMIT" ]]; then
    echo "error: CHANGELOG of the sdist names llama.cpp commit '$found', expected '$LLAMA_CPP_COMMIT'" >&2
    exit 1
fi

DST="$WORK/out/llama.cpp"
mkdir -p "$DST/ggml/src" "$DST/tools"
cp -a "$SRC/CMakeLists.txt" "$SRC/LICENSE" "$SRC/licenses" "$SRC/cmake" "$SRC/include" "$SRC/src" \
      "$SRC/common" "$SRC/vendor" "$DST/"
cp -a "$SRC/ggml/CMakeLists.txt" "$SRC/ggml/cmake" "$SRC/ggml/include" "$DST/ggml/"
# ggml/src: every plain file (core sources, CMakeLists.txt, version header template) + CPU and CUDA backends.
find "$SRC/ggml/src" -maxdepth 1 -type f -exec cp -a {} "$DST/ggml/src/" \;
cp -a "$SRC/ggml/src/ggml-cpu" "$SRC/ggml/src/ggml-cuda" "$DST/ggml/src/"
cp -a "$SRC/tools/llama-bench" "$DST/tools/"

# The patch: tools/CMakeLists.txt with only llama-bench (see the header).
orig_tools="$SRC/tools/CMakeLists.txt"
grep -q 'add_subdirectory(llama-bench)' "$orig_tools" || { echo "error: $orig_tools has no llama-bench" >&2; exit 1; }
cat > "$DST/tools/CMakeLists.txt" <<'EOF'
# Trimmed by edgellm_ext tools/pack_llama_cpp.sh: the original adds every tool; this tree carries only
# llama-bench. The preamble is the original's.

find_package(Threads REQUIRED)

llama_add_compile_flags()

add_subdirectory(llama-bench)
EOF

cat > "$DST/EDGELLM_PROVENANCE.txt" <<EOF
llama.cpp as vendored by llama-cpp-python==$PYPI_VERSION (PyPI sdist sha256 $SDIST_SHA256)
llama.cpp commit (from the sdist's CHANGELOG): ggml-org/llama.cpp@$LLAMA_CPP_COMMIT
Trimmed to build llama-bench only by edgellm_ext tools/pack_llama_cpp.sh; tools/CMakeLists.txt replaced (see there).
EOF
echo "$LLAMA_CPP_COMMIT" > "$DST/EDGELLM_LLAMA_CPP_COMMIT"

TARBALL="$OUT_DIR/llama_cpp_src.tar.xz"
# Reproducible archive (same bytes on every run with the same tar/xz): sorted names, fixed owner and mtime
# (files we write ourselves would otherwise carry today's), single-threaded xz -9 (the smallest carry).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$WORK/out" -cf - llama.cpp \
    | xz -9 -T1 > "$TARBALL.tmp"
mv "$TARBALL.tmp" "$TARBALL"
(cd "$OUT_DIR" && sha256sum "$(basename "$TARBALL")" > "$(basename "$TARBALL").sha256")
TAR_SHA256="$(cut -d' ' -f1 < "$TARBALL.sha256")"
TAR_BYTES="$(stat -c %s "$TARBALL")"
cat > "$OUT_DIR/llama_cpp_src.version" <<EOF
pypi_package=llama-cpp-python
pypi_version=$PYPI_VERSION
sdist_sha256=$SDIST_SHA256
llama_cpp_commit=$LLAMA_CPP_COMMIT
tarball=$(basename "$TARBALL")
tarball_sha256=$TAR_SHA256
tarball_bytes=$TAR_BYTES
unpacked_bytes=$(du -sb "$DST" | cut -f1)
EOF
cat "$OUT_DIR/llama_cpp_src.version"
