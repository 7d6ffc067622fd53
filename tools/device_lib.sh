# Shared steps of the device scripts (sourced; ROOT set by the caller). OUT: where results go ($OUT on the device).
# device_build: install the carried wheels (if any) into /tmp/site and build the package for sm_90.
# device_sanitize TESTFILE K: compute-sanitizer memcheck and racecheck on the tests of TESTFILE matching K.
# device_kernels_suite: bench/run.py --suite kernels under /tmp/bench; report.md and results.json into $OUT/bench.
# device_kernel_call: the body shared by device_fa2.sh and device_tmac.sh (below).
export PYTHONUNBUFFERED=1 CUDAARCHS=90
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"

device_build() {
  if ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
  fi
  rm -rf "$ROOT/build"
  local t0; t0=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps "$ROOT" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build $(( $(date +%s) - t0 )) s"
}

device_sanitize() {
  local tool
  for tool in memcheck racecheck; do
    (cd /tmp && timeout ${SANITIZE_TIMEOUT:-240} compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest \
      "$ROOT/$1" -q -p no:cacheprovider -k "$2" > "$OUT/$tool.log" 2>&1)
    echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/$tool.log" | tail -3
  done
}

device_kernels_suite() {
  # Written under /tmp (the charts are too many files to bring back); the report and results.json are copied.
  rm -rf /tmp/bench && (cd /tmp && python3 "$ROOT/bench/run.py" --suite kernels --out /tmp/bench > "$OUT/bench.log" 2>&1)
  echo "kernels suite exit $?"
  local run_dir; run_dir=$(ls -d /tmp/bench/*/ | head -1); mkdir -p "$OUT/bench"
  cp "$run_dir/report.md" "$run_dir/results.json" "$OUT/bench/"
  grep -E "\| (tmac|fused|fa2)" "$OUT/bench/report.md" | grep -E "PASS|FAIL" | cut -c1-200
}

# device_kernel_call LOG SANITIZE_FILE SANITIZE_K SWEEP_TOOL SWEEP_JSON TESTFILE...: build; the test files into
# $OUT/LOG (unless SKIP_TESTS; TEST_EXTRA: more pytest arguments); with SANITIZE, compute-sanitizer on the tests of
# SANITIZE_FILE matching SANITIZE_K (env SANITIZE_K overrides); the sweep tool into $OUT/SWEEP_JSON and its .log
# (unless SKIP_SWEEP; SWEEP_ARGS, SWEEP_TIMEOUT); with KERNELS, the kernels suite. Leaves the shell in /tmp.
device_kernel_call() {
  local log=$1 sanitize_file=$2 sanitize_k=$3 sweep=$4 sweep_json=$5 t
  shift 5
  local tests=()
  for t in "$@"; do tests+=("$ROOT/$t"); done
  device_build
  cd /tmp
  if [ -z "${SKIP_TESTS:-}" ]; then
    timeout 400 python3 -m pytest "${tests[@]}" ${TEST_EXTRA:-} -q -x -p no:cacheprovider 2>&1 | tee "$OUT/$log" | tail -15
  fi
  if [ -n "${SANITIZE:-}" ]; then device_sanitize "$sanitize_file" "${SANITIZE_K:-$sanitize_k}"; fi
  if [ -z "${SKIP_SWEEP:-}" ]; then
    timeout ${SWEEP_TIMEOUT:-300} python3 "$ROOT/$sweep" --out "$OUT/$sweep_json" ${SWEEP_ARGS:-} 2>&1 | tee "$OUT/${sweep_json%.json}.log"
  fi
  if [ -n "${KERNELS:-}" ]; then device_kernels_suite; fi
}
