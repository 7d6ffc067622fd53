#!/usr/bin/env bash
# Fifteenth session, call 5: build, then flush_dirty.py (see its docstring) into $OUT.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$ROOT/tools/device_lib.sh"
device_build
cd /tmp
python3 "$ROOT/bench/results/experiments_fifteenth_session/flush_dirty.py" --out "$OUT/flush_dirty.json" 2>&1 | tail -12
