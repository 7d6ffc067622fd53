"""Run llama.cpp's ``llama-bench`` once and read its JSON output into typed records.

llama-bench (llama.cpp ``tools/llama-bench``, here the tree vendored by llama-cpp-python 0.3.36, commit 0c1e57098)
times the model on synthetic tokens, with no sampling and no HTTP: per test it runs ``repetitions`` timed repeats
after a warm-up and prints, with ``-o json``, one object per test:

- a ``pp`` test (``n_prompt > 0, n_gen == 0``) times one prefill of ``n_prompt`` tokens,
- a ``tg`` test (``n_prompt == 0, n_gen > 0``) times ``n_gen`` single-token decode steps,
- each after a KV cache already filled with ``n_depth`` tokens (``-d``; the fill itself is not timed).

For each test llama-bench reports ``samples_ns`` (one wall time per repetition), ``samples_ts`` =
``1e9 * (n_prompt + n_gen) / samples_ns`` (tok/s), and their mean/standard deviation (``avg_ns``, ``stddev_ns``,
``avg_ts``, ``stddev_ts``; note that ``avg_ts`` is the mean of the per-repetition rates, not tokens / mean time).
The records keep all of these as printed; nothing is recomputed except a consistency check.

Failures raise :class:`~edgellm_ext.clients.common.EngineError` subclasses: :class:`LlamaBenchError` (binary
missing / not executable / non-zero exit, with the tail of stderr), :class:`LlamaBenchOutputError` (output that
is not the expected JSON), :class:`~edgellm_ext.clients.common.ModelMissing` (no such model file) and
:class:`~edgellm_ext.clients.common.EngineTimeout` (the run took longer than ``timeout_s``; the process group is
killed). Bad arguments raise TypeError/ValueError before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .common import EngineError, EngineTimeout, ModelMissing, one_line

__all__ = ["LlamaBenchError", "LlamaBenchOutputError", "LlamaBenchRecord", "llama_bench_command",
           "parse_llama_bench_json", "run_llama_bench"]

PathLike = Union[str, "os.PathLike[str]"]

# llama-bench's -o json writes samples_ts with 6 significant digits (std::ostream default), so a rate recomputed
# from samples_ns agrees to ~5e-6 relative; 1e-3 catches fields that do not belong together, not rounding.
_TS_REL_TOL = 1e-3
_STDERR_TAIL_LINES = 15


class LlamaBenchError(EngineError):
    """llama-bench could not be run or exited with an error.

    ``stderr_tail``: the last lines llama-bench wrote to stderr (empty when it did not run); the message holds
    them too, joined with `` | `` so that ``str(e)`` stays one line."""

    def __init__(self, message: str, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.stderr_tail = list(stderr_tail)


class LlamaBenchOutputError(LlamaBenchError):
    """llama-bench exited normally but its output is not the JSON it should print."""


@dataclasses.dataclass(frozen=True)
class LlamaBenchRecord:
    """One llama-bench test (one JSON object of ``-o json``), fields as llama-bench printed them.

    ``test`` is ``"pp"`` (prefill), ``"tg"`` (decode) or ``"pg"`` (both in one timing, from ``-pg``; this runner
    never asks for it). Times are in ns, rates in tokens/s.
    """

    test: str
    n_prompt: int
    n_gen: int
    n_depth: int
    samples_ns: tuple[int, ...]  # one wall time per repetition
    samples_ts: tuple[float, ...]  # 1e9 * (n_prompt + n_gen) / samples_ns, per repetition
    avg_ns: int
    stddev_ns: int
    avg_ts: float  # mean of samples_ts
    stddev_ts: float
    flash_attn: int  # 1 on, 0 off, -1 auto (llama_flash_attn_type)
    n_gpu_layers: int
    n_threads: int
    n_batch: int
    n_ubatch: int
    type_k: str
    type_v: str
    backends: str  # e.g. "CUDA" (llama-bench lists the non-CPU backends, "CPU" if none)
    gpu_info: str
    cpu_info: str
    build_commit: str
    build_number: int
    model_filename: str
    model_type: str  # llama_model_desc, e.g. "llama ?B Q4_1"
    model_size_bytes: int
    model_n_params: int
    test_time: str  # RFC 3339, UTC
    raw: dict[str, Any] = dataclasses.field(repr=False, compare=False)  # the whole JSON object, unchanged

    @property
    def name(self) -> str:
        """llama-bench's own label: ``pp512``, ``tg128``, ``tg128 @ d4096``."""
        if self.test == "pp":
            base = f"pp{self.n_prompt}"
        elif self.test == "tg":
            base = f"tg{self.n_gen}"
        else:
            base = f"pp{self.n_prompt}+tg{self.n_gen}"
        return base if self.n_depth == 0 else f"{base} @ d{self.n_depth}"

    @property
    def n_tokens(self) -> int:
        """Tokens processed in one timed repetition."""
        return self.n_prompt + self.n_gen


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def llama_bench_command(
    binary: PathLike,
    model_path: PathLike,
    *,
    n_prompt: int = 512,
    n_gen: int = 128,
    depths: Sequence[int] = (0,),
    repetitions: int = 5,
    flash_attn: bool = False,
    n_gpu_layers: int = 99,
    threads: Optional[int] = None,
) -> list[str]:
    """The argument vector :func:`run_llama_bench` runs (validated; nothing is run)."""
    _check_count(n_prompt, "n_prompt", 0)
    _check_count(n_gen, "n_gen", 0)
    if n_prompt == 0 and n_gen == 0:
        raise ValueError("n_prompt and n_gen are both 0: llama-bench would run no test")
    if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence):
        raise TypeError(f"depths must be a sequence of ints, got {type(depths).__name__}")
    if len(depths) == 0:
        raise ValueError("depths is empty: give at least one KV-cache depth (0 = empty cache)")
    for i, d in enumerate(depths):
        _check_count(d, f"depths[{i}]", 0)
    if len(set(depths)) != len(depths):
        raise ValueError(f"depths has repeated values: {list(depths)}")
    _check_count(repetitions, "repetitions", 1)
    if not isinstance(flash_attn, bool):
        raise TypeError(f"flash_attn must be a bool, got {type(flash_attn).__name__}")
    _check_count(n_gpu_layers, "n_gpu_layers", 0)
    if threads is not None:
        _check_count(threads, "threads", 1)
    argv = [
        os.fspath(binary),
        "-m", os.fspath(model_path),
        "-p", str(n_prompt),
        "-n", str(n_gen),
        "-d", ",".join(str(d) for d in depths),
        "-r", str(repetitions),
        # explicit: this llama.cpp's default is "auto", which would make the measured kernel depend on the build
        "-fa", "1" if flash_attn else "0",
        "-ngl", str(n_gpu_layers),
    ]
    if threads is not None:
        argv += ["-t", str(threads)]
    argv += ["-o", "json"]
    return argv


def run_llama_bench(
    binary: PathLike,
    model_path: PathLike,
    *,
    n_prompt: int = 512,
    n_gen: int = 128,
    depths: Sequence[int] = (0,),
    repetitions: int = 5,
    flash_attn: bool = False,
    n_gpu_layers: int = 99,
    threads: Optional[int] = None,
    timeout_s: float = 600.0,
) -> list[LlamaBenchRecord]:
    """Run one ``llama-bench ... -o json`` command and return its tests, in llama-bench's order.

    For each depth in ``depths`` llama-bench runs a ``pp{n_prompt}`` test (if ``n_prompt > 0``) and a
    ``tg{n_gen}`` test (if ``n_gen > 0``), each ``repetitions`` times. ``threads=None`` keeps llama-bench's
    default (its count of physical cores). The output must hold exactly those tests with ``repetitions`` samples
    each, or :class:`LlamaBenchOutputError` is raised. With ``n_gpu_layers > 0`` llama-bench must report a GPU
    (non-empty ``gpu_info``), or :class:`LlamaBenchError` is raised: llama-bench falls back to the CPU silently
    when CUDA cannot start. Use ``n_gpu_layers=0`` for a CPU run.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) \
            or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
    argv = llama_bench_command(binary, model_path, n_prompt=n_prompt, n_gen=n_gen, depths=depths,
                               repetitions=repetitions, flash_attn=flash_attn, n_gpu_layers=n_gpu_layers,
                               threads=threads)
    bin_path = Path(argv[0])
    if not bin_path.is_file():
        raise LlamaBenchError(f"llama-bench binary not found: {bin_path}")
    if not os.access(bin_path, os.X_OK):
        raise LlamaBenchError(f"llama-bench binary is not executable: {bin_path}")
    model = Path(os.fspath(model_path))
    if not model.is_file():
        raise ModelMissing(f"model file not found: {model}")

    # A new session so that a timeout can kill llama-bench and anything it started, as one process group.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise EngineTimeout(f"llama-bench did not finish within {timeout_s:g} s: {' '.join(argv)}") from None
    if proc.returncode != 0:
        tail = [line.strip() for line in stderr.strip().splitlines()[-_STDERR_TAIL_LINES:]]
        raise LlamaBenchError(f"llama-bench exited with code {proc.returncode} ({' '.join(argv)}); last lines of "
                              f"stderr: {' | '.join(tail) if tail else '(none)'}", stderr_tail=tail)

    expected = []
    for d in depths:  # llama-bench's order: per depth, the pp test then the tg test
        if n_prompt > 0:
            expected.append((n_prompt, 0, d))
        if n_gen > 0:
            expected.append((0, n_gen, d))
    records = parse_llama_bench_json(stdout, expected=expected, repetitions=repetitions)
    if n_gpu_layers > 0 and any(not r.gpu_info.strip() for r in records):
        # Where CUDA fails to start (no device, driver older than the runtime), llama-bench says so on stderr,
        # still lists "CUDA" under backends, and runs everything on the CPU: without this check a CPU figure
        # would pass for a GPU one. An empty gpu_info is how the JSON shows it.
        tail = [line.strip() for line in stderr.strip().splitlines()[-_STDERR_TAIL_LINES:]]
        raise LlamaBenchError(f"llama-bench saw no GPU (gpu_info is empty) although n_gpu_layers={n_gpu_layers} "
                              f"was asked for, so it ran on the CPU; pass n_gpu_layers=0 for a CPU run. Last lines "
                              f"of stderr: {' | '.join(tail) if tail else '(none)'}", stderr_tail=tail)
    return records


_STR_FIELDS = ("type_k", "type_v", "backends", "gpu_info", "cpu_info", "build_commit", "model_filename",
               "model_type", "test_time")
_INT_FIELDS = ("n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns", "flash_attn", "n_gpu_layers", "n_threads",
               "n_batch", "n_ubatch", "build_number", "model_size", "model_n_params")
_FLOAT_FIELDS = ("avg_ts", "stddev_ts")


def _field(obj: dict[str, Any], key: str, kind: str, where: str) -> Any:
    if key not in obj:
        raise LlamaBenchOutputError(f"llama-bench output {where}: field '{key}' missing")
    v = obj[key]
    ok = {
        "str": isinstance(v, str),
        "int": isinstance(v, int) and not isinstance(v, bool),
        "float": isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    }[kind]
    if not ok:
        raise LlamaBenchOutputError(f"llama-bench output {where}: field '{key}' should be {kind}, got {v!r}")
    return float(v) if kind == "float" else v


def _record(obj: Any, where: str) -> LlamaBenchRecord:
    if not isinstance(obj, dict):
        raise LlamaBenchOutputError(f"llama-bench output {where}: expected a JSON object, got {type(obj).__name__}")
    f = {k: _field(obj, k, "str", where) for k in _STR_FIELDS}
    f.update({k: _field(obj, k, "int", where) for k in _INT_FIELDS})
    f.update({k: _field(obj, k, "float", where) for k in _FLOAT_FIELDS})
    samples: dict[str, tuple] = {}
    for key, kind in (("samples_ns", int), ("samples_ts", float)):
        vals = obj.get(key)
        if not isinstance(vals, list) or not vals:
            raise LlamaBenchOutputError(f"llama-bench output {where}: '{key}' missing or empty")
        for v in vals:
            good = (isinstance(v, int) and not isinstance(v, bool) and v > 0) if kind is int else \
                (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
            if not good:
                raise LlamaBenchOutputError(f"llama-bench output {where}: '{key}' holds {v!r}, not a positive number")
        samples[key] = tuple(kind(v) for v in vals)
    if len(samples["samples_ns"]) != len(samples["samples_ts"]):
        raise LlamaBenchOutputError(f"llama-bench output {where}: {len(samples['samples_ns'])} samples_ns but "
                                    f"{len(samples['samples_ts'])} samples_ts")
    n_tokens = f["n_prompt"] + f["n_gen"]
    for ns, ts in zip(samples["samples_ns"], samples["samples_ts"]):
        recomputed = 1e9 * n_tokens / ns
        if abs(recomputed - ts) > _TS_REL_TOL * recomputed:
            raise LlamaBenchOutputError(f"llama-bench output {where}: samples_ts {ts} does not match "
                                        f"{n_tokens} tokens / {ns} ns = {recomputed:.6g} tok/s")
    if f["n_prompt"] > 0 and f["n_gen"] == 0:
        test = "pp"
    elif f["n_prompt"] == 0 and f["n_gen"] > 0:
        test = "tg"
    elif f["n_prompt"] > 0 and f["n_gen"] > 0:
        test = "pg"
    else:
        raise LlamaBenchOutputError(f"llama-bench output {where}: n_prompt and n_gen are both 0")
    return LlamaBenchRecord(
        test=test, n_prompt=f["n_prompt"], n_gen=f["n_gen"], n_depth=f["n_depth"],
        samples_ns=samples["samples_ns"], samples_ts=samples["samples_ts"],
        avg_ns=f["avg_ns"], stddev_ns=f["stddev_ns"], avg_ts=f["avg_ts"], stddev_ts=f["stddev_ts"],
        flash_attn=f["flash_attn"], n_gpu_layers=f["n_gpu_layers"], n_threads=f["n_threads"],
        n_batch=f["n_batch"], n_ubatch=f["n_ubatch"], type_k=f["type_k"], type_v=f["type_v"],
        backends=f["backends"], gpu_info=f["gpu_info"], cpu_info=f["cpu_info"],
        build_commit=f["build_commit"], build_number=f["build_number"], model_filename=f["model_filename"],
        model_type=f["model_type"], model_size_bytes=f["model_size"], model_n_params=f["model_n_params"],
        test_time=f["test_time"], raw=dict(obj),
    )


def _array_among_lines(text: str) -> Optional[Any]:
    """The JSON array llama-bench printed, if other lines surround it on stdout.

    llama.cpp logs to stderr, but a backend or driver may write a line to stdout; llama-bench's json printer
    puts "[" and "]" alone on their own lines, so the array is the text from the first such "[" line to the last
    "]" line. Returns None where that does not parse either (then the output is reported as not JSON)."""
    lines = text.splitlines()
    try:
        start = lines.index("[")
        end = len(lines) - 1 - lines[::-1].index("]")
    except ValueError:
        return None
    if end <= start:
        return None
    try:
        return json.loads("\n".join(lines[start:end + 1]))
    except json.JSONDecodeError:
        return None


def parse_llama_bench_json(
    text: str,
    *,
    expected: Optional[Sequence[tuple[int, int, int]]] = None,
    repetitions: Optional[int] = None,
) -> list[LlamaBenchRecord]:
    """Parse llama-bench's ``-o json`` stdout.

    ``expected``: the (n_prompt, n_gen, n_depth) of each test, in order; ``repetitions``: the sample count each
    test must have. Either check is skipped when None. Raises :class:`LlamaBenchOutputError`.
    """
    if not text.strip():
        raise LlamaBenchOutputError("llama-bench printed nothing on stdout (expected a JSON array)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        data = _array_among_lines(text)
        if data is None:
            raise LlamaBenchOutputError(f"llama-bench output is not valid JSON ({e.msg} at line {e.lineno}, column "
                                        f"{e.colno}; truncated?): {one_line(text, 160)}") from None
    if not isinstance(data, list):
        raise LlamaBenchOutputError(f"llama-bench output should be a JSON array of tests, got {type(data).__name__}")
    records = [_record(obj, f"test {i}") for i, obj in enumerate(data)]
    if repetitions is not None:
        for i, r in enumerate(records):
            if len(r.samples_ns) != repetitions:
                raise LlamaBenchOutputError(f"llama-bench output test {i} ({r.name}): {len(r.samples_ns)} samples, "
                                            f"expected {repetitions} repetitions")
    if expected is not None:
        got = [(r.n_prompt, r.n_gen, r.n_depth) for r in records]
        if got != list(expected):
            raise LlamaBenchOutputError(f"llama-bench output has tests (n_prompt, n_gen, n_depth) {got}, "
                                        f"expected {list(expected)}")
    return records
