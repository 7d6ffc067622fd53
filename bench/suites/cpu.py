"""CPU suite: edgellm_ext.cpu kernels on every compiled SIMD path, side by side with numpy in the same run.

Every number is a host-clock time of a Python call (kind "host"): ``time_host`` times ``inner`` back-to-back
calls per sample (``inner`` chosen so a sample lasts >= 50 us, the same ``inner`` for every engine of a case),
so the figures include the Python wrapper's argument checks; the empty-call floor is measured and reported first.
numpy is the anchor: ``np.dot`` / ``np.matmul`` go to numpy's BLAS (named in the environment record), rmsnorm and
softmax are numpy's vectorised ufunc expressions. Outputs are preallocated on both sides. Each edgellm result is
checked against numpy before it is timed. Ratios are median(edgellm)/median(numpy) time (< 1: edgellm faster)
with a bootstrap 95% interval.

The seed's seven CPU targets (shared/seeds/004) are reported as a table; the ones whose kernels are not in this
build yet are listed as "not measured: kernel not in this build".
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import numpy as np

import edgellm_ext
from edgellm_ext import results as R
from edgellm_ext.models import get_model
from edgellm_ext.stats import median_agreement
from edgellm_ext.timing import calibrate_inner, call_overhead_us, time_host

NAME = "cpu"
KIND = "host"
DESCRIPTION = "edgellm_ext.cpu kernels (each SIMD path) vs numpy/BLAS, plus the seed's CPU targets"

_MAX_MATRIX_ELEMENTS = 64 * 1024 * 1024  # 256 MiB of f32: beyond that the CPU suite is not the right tool
_EPS = 1e-5


def available(ctx: Any) -> tuple[bool, str]:
    try:
        paths = edgellm_ext.cpu.simd_paths()
    except Exception as e:  # a broken build
        return False, f"edgellm_ext.cpu unusable: {type(e).__name__}: {e}"
    return (True, "") if paths else (False, "no SIMD path reported by edgellm_ext.cpu.simd_paths()")


def _cases(ctx: Any) -> list[tuple[str, tuple[int, ...], Optional[str]]]:
    """(kernel, shape, model) triples. The seed's 384-sized cases always; model shapes from --model (default
    SmolLM2-135M): each layer matrix for matvec, hidden size for dot/rmsnorm."""
    if ctx.quick:
        return [("dot", (384,), None), ("matvec", (384, 384), None), ("rmsnorm", (384,), None),
                ("softmax", (1024,), None)]
    cases: list[tuple[str, tuple[int, ...], Optional[str]]] = [
        ("dot", (384,), None), ("matvec", (384, 384), None), ("rmsnorm", (384,), None)]
    for model in ctx.models or [get_model("SmolLM2-135M")]:
        cases += [("dot", (model.hidden_size,), model.name), ("rmsnorm", (model.hidden_size,), model.name)]
        cases += [("matvec", shape, model.name) for shape in model.layer_matrices().values()]
    cases += [("softmax", (n,), None) for n in (256, 1024, 4096)]
    seen, unique = set(), []
    for c in cases:
        if (c[0], c[1]) not in seen:
            seen.add((c[0], c[1]))
            unique.append(c)
    return unique


def _inputs(kernel: str, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    f32 = np.float32
    if kernel == "dot":
        return {"a": rng.standard_normal(shape[0]).astype(f32), "b": rng.standard_normal(shape[0]).astype(f32)}
    if kernel == "matvec":
        rows, cols = shape
        return {"w": rng.standard_normal((rows, cols)).astype(f32), "x": rng.standard_normal(cols).astype(f32),
                "y": np.empty(rows, dtype=f32), "y_np": np.empty(rows, dtype=f32)}
    if kernel == "rmsnorm":
        n = shape[0]
        return {"x": rng.standard_normal(n).astype(f32), "w": rng.uniform(0.5, 1.5, n).astype(f32),
                "y": np.empty(n, dtype=f32)}
    if kernel == "softmax":
        n = shape[0]
        return {"x": (rng.standard_normal(n) * 4).astype(f32), "y": np.empty(n, dtype=f32)}
    raise ValueError(f"unknown kernel {kernel!r}")


def _callables(kernel: str, d: dict[str, np.ndarray], simd: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(edgellm call for ``simd``, numpy call) computing the same thing into preallocated outputs."""
    cpu = edgellm_ext.cpu
    if kernel == "dot":
        a, b = d["a"], d["b"]
        return (lambda: cpu.dot(a, b, simd=simd)), (lambda: np.dot(a, b))
    if kernel == "matvec":
        w, x, y, y_np = d["w"], d["x"], d["y"], d["y_np"]
        return (lambda: cpu.matvec(w, x, out=y, simd=simd)), (lambda: np.matmul(w, x, out=y_np))
    if kernel == "rmsnorm":
        x, w, y = d["x"], d["w"], d["y"]
        eps = np.float32(_EPS)

        def np_rmsnorm() -> np.ndarray:
            return x * (np.float32(1.0) / np.sqrt(np.mean(x * x) + eps)) * w

        return (lambda: cpu.rmsnorm(x, w, eps=_EPS, out=y, simd=simd)), np_rmsnorm
    if kernel == "softmax":
        x, y = d["x"], d["y"]

        def np_softmax() -> np.ndarray:
            e = np.exp(x - x.max())
            return e / e.sum()

        return (lambda: cpu.softmax(x, out=y, simd=simd)), np_softmax
    raise ValueError(f"unknown kernel {kernel!r}")


def _check_same(kernel: str, got: Any, want: Any, n: int) -> Optional[str]:
    """None if edgellm's result matches numpy's within float32 accumulation error, else a one-line reason."""
    got64, want64 = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    # f32 sums of n terms: relative error grows ~ sqrt(n) * eps32; 1e-4 * scale leaves margin for n <= 64k.
    scale = max(1.0, float(np.max(np.abs(want64))))
    tol = 1e-4 * scale * max(1.0, np.sqrt(n) / 8)
    err = float(np.max(np.abs(got64 - want64)))
    return None if err <= tol else f"{kernel}: max |edgellm - numpy| = {err:.3g} > {tol:.3g}"


def _label(kernel: str, shape: tuple[int, ...]) -> str:
    return f"{kernel} {'x'.join(str(s) for s in shape)}"


_SEED_TARGETS = [
    # (target, threshold_us, unit, case measured with the "auto" path or None if no kernel yet, note)
    ("tokenization: 100 characters", 10.0, "us", None, "BPE tokenizer"),
    ("Q4_0 dequantization: 1 block (32 values)", 2.0, "us", None, "Q4_0 dequant"),
    ("dot product: 384 elements", 1.0, "us", ("dot", (384,)), None),
    ("matrix-vector: 384x384", 500.0, "us", ("matvec", (384, 384)), None),
    ("layer norm: 384 elements", 10.0, "us", ("rmsnorm", (384,)),
     "measured with RMSNorm (this package's norm; the seed named LayerNorm)"),
    ("KV cache access", 1.0, "us", None, "KV cache"),
    ("arena allocation: 1 KiB", 1.0, "us", None, "arena allocator"),
]


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    m = ctx.methodology
    warmup, iters = m.warmup_iterations, m.iterations
    min_sample_us = 20.0 if ctx.quick else 50.0
    rng = np.random.default_rng(20261121)
    paths = edgellm_ext.cpu.simd_paths()
    auto = edgellm_ext.build_info().get("simd", paths[-1])

    floor = call_overhead_us(warmup=warmup, iters=iters, inner=1000)
    yield R.measurement(name="python empty call (timing floor)", kind="host", engine="python", metric="latency",
                        unit="us", samples=floor, params={"inner": 1000},
                        notes="per-call time of `lambda: None` in the same timing loop: the floor under every "
                              "host figure below")
    yield R.note(f"SIMD paths: {', '.join(paths)}; 'auto' selects {auto}. numpy BLAS: "
                 f"{ctx.environment.get('numpy_blas')}. Times are per call through the Python API.")

    measured: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    cases = _cases(ctx)
    for kernel, shape, model in ctx.progress(cases, desc="cpu", total=len(cases)):
        label = _label(kernel, shape)
        if int(np.prod(shape)) > _MAX_MATRIX_ELEMENTS:
            yield R.skip(label, f"{int(np.prod(shape))} f32 elements is beyond the CPU suite's limit of "
                                f"{_MAX_MATRIX_ELEMENTS}")
            continue
        data = _inputs(kernel, shape, rng)
        n = int(shape[-1])
        np_fn = _callables(kernel, data, paths[0])[1]
        inner = calibrate_inner(np_fn, min_sample_us=min_sample_us)
        params_base = {"kernel": kernel, "shape": list(shape), "inner": inner, "dtype": "float32"}
        np_samples = time_host(np_fn, warmup, iters, inner=inner)
        np_meas = R.measurement(name=f"{label} [numpy]", kind="host", engine="numpy", metric="latency", unit="us",
                                samples=np_samples, params={**params_base, "simd": "numpy"}, model=model)
        yield np_meas
        for path in paths:
            ed_fn, _ = _callables(kernel, data, path)
            problem = _check_same(kernel, ed_fn(), np_fn(), n)
            if problem is not None:
                yield R.skip(f"{label} [edgellm-{path}]", f"result differs from numpy, not timed: {problem}")
                continue
            samples = time_host(ed_fn, warmup, iters, inner=inner)
            meas = R.measurement(name=f"{label} [edgellm-{path}]", kind="host", engine=f"edgellm-{path}",
                                 metric="latency", unit="us", samples=samples, params={**params_base, "simd": path},
                                 model=model)
            yield meas
            yield R.comparison(name=f"{label}: edgellm-{path} / numpy", a=meas, b=np_meas,
                               description="time ratio (< 1: edgellm faster)")
            if path == auto:
                measured[(kernel, shape)] = meas

    # The seed's reproducibility criterion: the same measurement twice in a row agrees within 5% at the median.
    repro = measured.get(("dot", (384,)))
    if repro is not None:
        data = _inputs("dot", (384,), rng)
        fn = _callables("dot", data, auto)[0]
        inner = int(repro["params"]["inner"])
        first = time_host(fn, warmup, iters, inner=inner)
        second = time_host(fn, warmup, iters, inner=inner)
        agreement = median_agreement(first, second, m.reproducibility_tolerance)
        yield R.target(target="reproducibility: dot 384 measured twice, |median difference|",
                       threshold=100.0 * m.reproducibility_tolerance, unit="%",
                       measured=100.0 * agreement["relative_difference"], status="measured",
                       notes=f"medians {agreement['median_a']:.4g} and {agreement['median_b']:.4g} us")

    for name, threshold, unit, case, what in _SEED_TARGETS:
        if case is None:
            yield R.target(target=name, threshold=threshold, unit=unit, measured=None,
                           status="not measured: kernel not in this build", notes=what)
            continue
        meas = measured.get(case)
        if meas is None:
            yield R.target(target=name, threshold=threshold, unit=unit, measured=None,
                           status="not measured: case not run (or its result differed from numpy)", notes=what)
            continue
        s = meas["stats"]
        yield R.target(target=name, threshold=threshold, unit=unit, measured=s["median"],
                       status=f"measured: median of edgellm-{auto}, p95 {s['p95']:.3g} us",
                       notes=((what + "; ") if what else "") + "includes the Python call overhead")
