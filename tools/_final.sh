set -uo pipefail
ROOT=$(pwd); OUT=${OUT:-/tmp/out}; mkdir -p $OUT; export CUDAARCHS=90 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$ROOT"/.whl/*.whl && export PYTHONPATH=/tmp/site
rm -rf build; python3 -m pip install -q --no-build-isolation --no-deps . > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
cd /tmp
timeout 200 python3 -m pytest $ROOT/tests/test_engine_gpu.py $ROOT/tests/test_fa2_decode.py -q -p no:cacheprovider > $OUT/pytest.log 2>&1; echo "pytest exit $?"; grep -E "passed|failed|^FAILED|^E " $OUT/pytest.log | head -12
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest $ROOT/tests/test_engine_gpu.py -q -p no:cacheprovider -k "full_cache or trace or (batched_prefill and qwen2 and graph)" > $OUT/memcheck.log 2>&1; echo "memcheck exit $?"; grep -E "ERROR SUMMARY|passed|failed" $OUT/memcheck.log | tail -3
