"""GPU GEMV, fused RMSNorm + GEMV and standalone RMSNorm (edgellm_ext.gemv) against float64 references.

Inputs are fresh random normals rounded to their dtype (the reference uses exactly those rounded values);
outputs are poisoned with NaN (all bytes 0xFF) before each run and checked fully written (finite).

Error bound (stated once, used everywhere): with xn = x * inv_rms * g (or x without the norm) and
bound[b, m] = sum_k |w[m, k]| * |xn[b, k]|,
    |y - y_ref| <= (u_out + (2K + 16) * 2^-24) * bound + abs_out
where u_out is the unit roundoff of the output dtype (fp16 2^-11, bf16 2^-8, fp32 2^-24: the final rounding,
|y| <= bound; abs_out covers an output that rounds to a subnormal), (K + 8) * 2^-24 is the worst case of a K-term fp32 sum of products, and another (K + 8) * 2^-24
covers the fp32 sum of squares behind inv_rms and the g * x product. Real errors are far smaller; the bound is
deterministic, so no test can fail by chance.

Tests marked gpu need a CUDA device; the error-path tests at the end run anywhere (validation happens in
Python before any CUDA call).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgellm_ext
from edgellm_ext import cuda as C
from edgellm_ext import gemv as G
from edgellm_ext.cuda import DeviceArray

U_OUT = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24}
# Absolute rounding error of a subnormal output (half the smallest subnormal step), where the relative bound
# above no longer holds: fp16 subnormals start below 6.1e-5, which tiny random products do reach.
ABS_OUT = {"float16": 2.0**-25, "bfloat16": 2.0**-134, "float32": 2.0**-150}
U32 = 2.0**-24
EPS = 1e-5
K_LIST = [1, 7, 63, 65, 1000, 1536, 4097, 16384, 20000]
M_LIST = [1, 7, 33, 576, 4097, 49152, 151936]


# ----------------------------------------------------------------------------------------------- helpers
def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (inputs are finite)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def _device(values: np.ndarray, dtype: str) -> tuple[np.ndarray, DeviceArray]:
    """(the values exactly as stored in dtype, as float32; a device copy of dtype)."""
    if dtype == "bfloat16":
        bits = _bf16_bits(values)
        raw = C.from_host(bits)
        exact = (bits.astype(np.uint32) << 16).view(np.float32)
        return exact, DeviceArray(raw.address, raw.shape, "bfloat16", raw.owner)
    arr = np.ascontiguousarray(values.astype(dtype))
    return arr.astype(np.float32), C.from_host(arr)


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0):
    return _device((rng.standard_normal(shape) * scale).astype(np.float32), dtype)


def _poisoned(shape: tuple[int, ...], dtype: str) -> DeviceArray:
    out = C.empty(shape, dtype)
    out.owner.fill_bytes(0xFF, 0)  # every fp16/bf16/fp32 element NaN
    return out


def _normed(x: np.ndarray, g: np.ndarray | None) -> np.ndarray:
    x64 = x.astype(np.float64)
    if g is None:
        return x64
    inv = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + EPS)
    return x64 * inv * g.astype(np.float64)


def _reference(w: np.ndarray, xn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, bound) in float64, rows of w in chunks (w may be 151936 x 576)."""
    xn2 = np.atleast_2d(xn)
    y = np.empty((xn2.shape[0], w.shape[0]))
    bound = np.empty_like(y)
    for start in range(0, w.shape[0], 8192):
        chunk = w[start:start + 8192].astype(np.float64)
        y[:, start:start + 8192] = xn2 @ chunk.T
        bound[:, start:start + 8192] = np.abs(xn2) @ np.abs(chunk).T
    return y, bound


def _check(got: np.ndarray, y: np.ndarray, bound: np.ndarray, k: int, out_dtype: str, extra: float = 0.0) -> None:
    got = np.asarray(got, dtype=np.float64).reshape(y.shape)
    assert np.isfinite(got).all(), f"{int((~np.isfinite(got)).sum())} outputs not written (NaN poison) or not finite"
    tol = (U_OUT[out_dtype] + extra + (2 * k + 16) * U32) * bound + ABS_OUT[out_dtype]
    err = np.abs(got - y)
    worst = int(np.argmax(err - tol))
    assert (err <= tol).all(), (
        f"max error over bound at flat index {worst}: err {err.flat[worst]:.3e} > tol {tol.flat[worst]:.3e} "
        f"(got {got.flat[worst]!r}, want {y.flat[worst]!r})")


def _run_matmul(rng, *, m: int, k: int, batch: int, w_dtype: str, x_dtype: str, variant: str, norm: bool,
                x_scale: float = 1.0) -> None:
    w, wd = _random(rng, (m, k), w_dtype, scale=1.0 / np.sqrt(k))
    x, xd = _random(rng, (batch, k), x_dtype, scale=x_scale)
    g, gd = _random(rng, (k,), x_dtype) if norm else (None, None)
    out = _poisoned((batch, m), x_dtype)
    if norm:
        result = G.fused_rmsnorm_matmul(xd, gd, wd, eps=EPS, out=out, variant=variant)
    else:
        result = G.gemv(xd, wd, out=out, variant=variant)
    assert result is out
    y, bound = _reference(w, _normed(x, g))
    _check(C.to_host(out), y, bound, k, x_dtype)


def _vector_ok(k: int) -> bool:
    return k % 8 == 0


# ------------------------------------------------------------------------------------ correctness (GPU)
_K_CASES = [(k, d, v) for k in K_LIST for d in ("float16", "bfloat16", "float32")
            for v in (("auto", "warp", "block", "scalar") if _vector_ok(k) else ("auto", "scalar"))]


@pytest.mark.gpu
@pytest.mark.parametrize("k,x_dtype,variant", _K_CASES)
def test_fused_every_k(rng, k: int, x_dtype: str, variant: str) -> None:
    _run_matmul(rng, m=37, k=k, batch=3, w_dtype="float16", x_dtype=x_dtype, variant=variant, norm=True)


@pytest.mark.gpu
@pytest.mark.parametrize("k,variant", [(k, v) for k in K_LIST
                                       for v in (("warp", "block", "scalar") if _vector_ok(k) else ("scalar",))])
def test_gemv_every_k(rng, k: int, variant: str) -> None:
    _run_matmul(rng, m=37, k=k, batch=2, w_dtype="bfloat16", x_dtype="float32", variant=variant, norm=False)


@pytest.mark.gpu
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("variant", ["warp", "block", "scalar"])
@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("w_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_batch_and_dtypes(rng, batch: int, w_dtype: str, x_dtype: str, variant: str, norm: bool) -> None:
    _run_matmul(rng, m=65, k=1536, batch=batch, w_dtype=w_dtype, x_dtype=x_dtype, variant=variant, norm=norm)


@pytest.mark.gpu
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("w_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("k", [8, 256, 576, 1024, 1032, 2048, 4104, 8192])
def test_shared_every_k(rng, k: int, w_dtype: str, x_dtype: str, norm: bool) -> None:
    # "shared": one chunk per thread or less (K <= 2048), the staging loop's second pass (4104), the dot
    # products' later weight batches (K > 1024) and the longest K; 4097 rows: an odd last row, and a last block
    # with warps that own no rows (they stage x, meet the barrier and leave).
    _run_matmul(rng, m=4097, k=k, batch=1, w_dtype=w_dtype, x_dtype=x_dtype, variant="shared", norm=norm)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["auto", "warp", "block", "shared"])
@pytest.mark.parametrize("m", M_LIST)
def test_fused_every_m(rng, m: int, variant: str) -> None:
    # K = 576 (SmolLM2's hidden size): 151936 rows is Qwen2.5's LM head height.
    _run_matmul(rng, m=m, k=576, batch=1, w_dtype="float16", x_dtype="float16", variant=variant, norm=True)


@pytest.mark.gpu
def test_fused_large_x_scale(rng) -> None:
    # The norm is scale-invariant: x ~ 300 * N(0, 1) in fp16 (sum x^2 ~ 1.5e9, far beyond fp16 range) must give
    # the same normalised product; the sum of squares is accumulated in fp32.
    _run_matmul(rng, m=129, k=16384, batch=1, w_dtype="float16", x_dtype="float16", variant="auto", norm=True,
                x_scale=300.0)


@pytest.mark.gpu
@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("k", K_LIST)
def test_rmsnorm_gpu(rng, k: int, batch: int, x_dtype: str) -> None:
    x, xd = _random(rng, (batch, k), x_dtype, scale=3.0)
    g, gd = _random(rng, (k,), x_dtype)
    out = _poisoned((batch, k), x_dtype)
    assert G.rmsnorm_gpu(xd, gd, eps=EPS, out=out) is out
    got = C.to_host(out).astype(np.float64)
    want = _normed(x, g)
    assert np.isfinite(got).all(), "outputs not written"
    # Elementwise: final rounding + the fp32 sum of squares (K terms) + two fp32 products.
    tol = (U_OUT[x_dtype] + (k + 16) * U32) * np.abs(want) + ABS_OUT[x_dtype]
    assert (np.abs(got - want) <= tol).all(), float(np.max(np.abs(got - want) - tol))


@pytest.mark.gpu
@pytest.mark.parametrize("k", [576, 1000, 4097])
def test_separate_norm_then_gemv(rng, k: int) -> None:
    # The two-launch path the fused kernel replaces: rmsnorm_gpu writes xn rounded to fp16, then gemv.
    m = 300
    w, wd = _random(rng, (m, k), "float16", scale=1.0 / np.sqrt(k))
    x, xd = _random(rng, (2, k), "float16")
    g, gd = _random(rng, (k,), "float16")
    xn_dev = _poisoned((2, k), "float16")
    G.rmsnorm_gpu(xd, gd, eps=EPS, out=xn_dev)
    out = _poisoned((2, m), "float16")
    G.gemv(xn_dev, wd, out=out)
    y, bound = _reference(w, _normed(x, g))
    # xn's own fp16 rounding adds u_fp16 (plus its inv_rms error) relative to bound.
    _check(C.to_host(out), y, bound, k, "float16", extra=U_OUT["float16"] + (k + 16) * U32)


@pytest.mark.gpu
@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32"])
def test_prepared_separate_baseline(rng, x_dtype: str) -> None:
    # RmsnormThenGemvOp: the two launches as one prepared op (what the benchmark compares the fused op with).
    k, m, batch = 1536, 257, 3
    w, wd = _random(rng, (m, k), "bfloat16", scale=1.0 / np.sqrt(k))
    x, xd = _random(rng, (batch, k), x_dtype)
    g, gd = _random(rng, (k,), x_dtype)
    out = _poisoned((batch, m), x_dtype)
    op = G.prepare_rmsnorm_then_gemv(xd, gd, wd, eps=EPS, out=out)
    assert op.kernels_per_launch == 2
    fused = G.prepare_fused_rmsnorm_matmul(xd, gd, wd, eps=EPS, out=_poisoned((batch, m), x_dtype))
    xs = 4 if x_dtype == "float32" else 2
    assert op.bytes_moved == fused.bytes_moved + 2 * batch * k * xs  # + xn written, then read
    assert op.variant == fused.variant
    op.launch(0)
    y, bound = _reference(w, _normed(x, g))
    _check(C.to_host(out), y, bound, k, x_dtype, extra=U_OUT[x_dtype] + (k + 16) * U32)


@pytest.mark.gpu
def test_numpy_in_numpy_out(rng) -> None:
    k, m = 576, 960
    w = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(np.float16)
    x = rng.standard_normal(k).astype(np.float16)
    g = rng.standard_normal(k).astype(np.float16)
    y_got = G.fused_rmsnorm_matmul(x, g, w)
    assert isinstance(y_got, np.ndarray) and y_got.shape == (m,) and y_got.dtype == np.float16
    y, bound = _reference(w.astype(np.float32), _normed(x.astype(np.float32), g.astype(np.float32)))
    _check(y_got, y, bound, k, "float16")
    plain = G.gemv(x, w)
    y2, bound2 = _reference(w.astype(np.float32), x.astype(np.float64))
    _check(plain, y2, bound2, k, "float16")
    xn = G.rmsnorm_gpu(x, g)
    assert isinstance(xn, np.ndarray) and xn.shape == (k,) and xn.dtype == np.float16


@pytest.mark.gpu
def test_unaligned_addresses_fall_back_to_scalar(rng) -> None:
    # K % 8 == 0 but x starts 2 bytes into a buffer: the 16-byte loads cannot be used.
    k, m = 1536, 70
    w, wd = _random(rng, (m, k), "float16", scale=1.0 / np.sqrt(k))
    xbuf = (rng.standard_normal(k + 1)).astype(np.float16)
    raw = C.from_host(xbuf)
    xd = DeviceArray(raw.address + 2, (1, k), "float16", raw.owner)
    g, gd = _random(rng, (k,), "float16")
    out = _poisoned((1, m), "float16")
    op = G.prepare_fused_rmsnorm_matmul(xd, gd, wd, out=out)
    assert op.variant == "scalar"
    op.launch(0)
    y, bound = _reference(w, _normed(xbuf[1:].astype(np.float32)[None, :], g))
    _check(C.to_host(out), y, bound, k, "float16")
    with pytest.raises(ValueError, match="16-byte aligned"):
        G.prepare_fused_rmsnorm_matmul(xd, gd, wd, out=out, variant="warp")
    with pytest.raises(ValueError, match="K % 8 == 0"):
        G.prepare_gemv(_random(rng, (1, 63), "float16")[1], _random(rng, (5, 63), "float16")[1], variant="block")


@pytest.mark.gpu
def test_prepared_ops_for_timers(rng) -> None:
    k, m, batch = 576, 960, 1
    w, wd = _random(rng, (m, k), "float16")
    x, xd = _random(rng, (batch, k), "float16")
    g, gd = _random(rng, (k,), "float16")
    out = _poisoned((batch, m), "float16")
    fused = G.prepare_fused_rmsnorm_matmul(xd, gd, wd, out=out)
    plain = G.prepare_gemv(xd, wd, out=out)
    xn = _poisoned((batch, k), "float16")
    norm = G.prepare_rmsnorm(xd, gd, out=xn)
    assert fused.kernels_per_launch == 1 and plain.kernels_per_launch == 1 and norm.kernels_per_launch == 1
    assert fused.variant == plain.variant == G.choose_variant(m, k, batch)
    assert plain.bytes_moved == m * k * 2 + batch * k * 2 + batch * m * 2
    assert fused.bytes_moved == plain.bytes_moved + k * 2
    assert norm.bytes_moved == (2 * batch + 1) * k * 2
    assert fused.activation_reads_bytes >= batch * k * 2
    with C.Timer() as timer:
        ev = timer.events(fused, warmup=3, iterations=5)
        gr = timer.graph(fused, launches_per_graph=10, warmup=2, replays=3)
        timer.stream.synchronize()
    assert ev.shape == (5,) and np.isfinite(ev).all() and (ev > 0).all()
    assert np.isfinite(gr).all() and (gr > 0).all()
    # After repeated launches (and graph replays) the result is still the fused product.
    y, bound = _reference(w, _normed(x, g))
    _check(C.to_host(out), y, bound, k, "float16")


@pytest.mark.gpu
def test_torch_zero_copy_bf16_and_stream() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    gen = torch.Generator(device="cuda").manual_seed(1234)
    k, m = 896, 4864
    w = (torch.randn(m, k, device="cuda", generator=gen) / k**0.5).to(torch.bfloat16)
    x = torch.randn(3, k, device="cuda", generator=gen).to(torch.bfloat16)
    g = torch.randn(k, device="cuda", generator=gen).to(torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the inputs were made on the default stream
    with torch.cuda.stream(stream):
        y = G.fused_rmsnorm_matmul(x, g, w, stream=stream)
    stream.synchronize()
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16 and tuple(y.shape) == (3, m)
    x64, g64, w64 = x.double(), g.double(), w.double()
    xn = x64 * torch.rsqrt((x64 * x64).mean(-1, keepdim=True) + EPS) * g64
    want = xn @ w64.T
    bound = xn.abs() @ w64.abs().T
    tol = (U_OUT["bfloat16"] + (2 * k + 16) * U32) * bound + ABS_OUT["bfloat16"]
    assert bool(((y.double() - want).abs() <= tol).all())
    out = torch.full((3, m), float("nan"), device="cuda", dtype=torch.bfloat16)
    assert G.gemv(x, w, out=out) is out
    torch.cuda.synchronize()
    assert bool(((out.double() - x64 @ w64.T).abs() <= (U_OUT["bfloat16"] + (k + 16) * U32) *
                 (x64.abs() @ w64.abs().T)).all())


@pytest.mark.gpu
def test_rmsnorm_out_overlapping_x_is_rejected(rng) -> None:
    x, xd = _random(rng, (2, 64), "float16")
    g, gd = _random(rng, (64,), "float16")
    with pytest.raises(ValueError, match="overlap"):
        G.rmsnorm_gpu(xd, gd, out=xd)


@pytest.mark.gpu
def test_choose_variant_table() -> None:
    # The table's answers for the model shapes are what "auto" launches (whatever the measured crossover is).
    for m, k in [(576, 576), (960, 576), (576, 1536), (49152, 576), (896, 4864), (14336, 4096), (1, 16384)]:
        assert G.choose_variant(m, k) in ("shared", "block")
        assert G.choose_variant(m, k, 2) in ("warp", "block")


# -------------------------------------------------------------------------- validation (no GPU needed)
def _np(shape, dtype="float16"):
    return np.ones(shape, dtype=dtype)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(x=_np((4,), "float64")), TypeError, "x: expected dtype"),
        (dict(x=_np((4,), "int32")), TypeError, "x: expected dtype"),
        (dict(x=[1.0, 2.0, 3.0, 4.0]), TypeError, "x: expected a torch"),
        (dict(x=_np((1, 1, 4))), ValueError, r"x: expected shape \(K,\) or \(B, K\)"),
        (dict(x=_np((9, 4))), ValueError, r"batch B must be in \[1, 8\]"),
        (dict(x=_np((0, 4))), ValueError, r"batch B must be in \[1, 8\]"),
        (dict(x=_np((2, 0)), g=_np((0,))), ValueError, "K must be"),
        (dict(x=_np((2, 8))[:, ::2]), ValueError, "x: must be C-contiguous"),
        (dict(w=_np((3, 4), "float32")), TypeError, "w: expected dtype float16 or bfloat16"),
        (dict(w=_np((12,))), ValueError, r"w: expected shape \(M, 4\)"),
        (dict(w=_np((3, 5))), ValueError, r"w: expected shape \(M, 4\)"),
        (dict(w=_np((0, 4))), ValueError, "w: M must be"),
        (dict(w=_np((4, 6))[:, :4]), ValueError, "w: must be C-contiguous"),
        (dict(g=_np((5,))), ValueError, r"g: expected shape \(4,\)"),
        (dict(g=_np((4,), "float32")), TypeError, "g: expected dtype float16"),
        (dict(eps=float("nan")), ValueError, "eps: expected a finite value"),
        (dict(eps=-1e-6), ValueError, "eps: expected a finite value"),
        (dict(eps=float("inf")), ValueError, "eps: expected a finite value"),
        (dict(eps=True), TypeError, "eps: expected a float"),
        (dict(eps="1e-5"), TypeError, "eps: expected a float"),
        (dict(variant="fast"), ValueError, "variant: expected one of"),
        (dict(variant=None), TypeError, "variant: expected one of"),
        (dict(x=_np((2, 4)), variant="shared"), ValueError, "'shared' needs batch 1 and K <= 8192, got batch 2"),
        (dict(x=_np((8200,)), g=_np((8200,)), w=_np((3, 8200)), variant="shared"), ValueError,
         "'shared' needs batch 1 and K <= 8192, got batch 1, K=8200"),
        (dict(out=_np((3,))), TypeError, "out: expected a device array"),
        (dict(out=DeviceArray(0, (4,), "float16", None)), ValueError, r"out: expected shape \(3,\)"),
        (dict(out=DeviceArray(0, (3,), "float32", None)), TypeError, "out: expected dtype float16"),
    ],
)
def test_fused_validation_before_any_launch(kwargs, exc, match) -> None:
    args = dict(x=_np((4,)), g=_np((4,)), w=_np((3, 4)), eps=1e-5, out=None, variant="auto")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        G.fused_rmsnorm_matmul(args["x"], args["g"], args["w"], eps=args["eps"], out=args["out"],
                               variant=args["variant"])
    with pytest.raises(exc, match=match):
        G.prepare_fused_rmsnorm_matmul(args["x"], args["g"], args["w"], eps=args["eps"], out=args["out"],
                                       variant=args["variant"])


def test_gemv_validation_before_any_launch() -> None:
    with pytest.raises(TypeError, match="x: expected dtype"):
        G.gemv(_np((4,), "float64"), _np((3, 4)))
    with pytest.raises(ValueError, match=r"w: expected shape \(M, 4\)"):
        G.gemv(_np((2, 4)), _np((3, 8)))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3\)"):
        G.gemv(_np((2, 4)), _np((3, 4)), out=DeviceArray(0, (3,), "float16", None))
    with pytest.raises(ValueError, match="variant: expected one of"):
        G.prepare_gemv(_np((4,)), _np((3, 4)), variant="Warp")
    with pytest.raises(TypeError, match="w: expected dtype"):
        G.prepare_gemv(_np((4,), "float32"), _np((3, 4), "float32"))


def test_rmsnorm_validation_before_any_launch() -> None:
    with pytest.raises(TypeError, match="x: expected dtype"):
        G.rmsnorm_gpu(_np((4,), "float64"), _np((4,), "float64"))
    with pytest.raises(ValueError, match=r"g: expected shape \(4,\)"):
        G.rmsnorm_gpu(_np((2, 4)), _np((2, 4)))
    with pytest.raises(ValueError, match=r"batch B must be in \[1, 8\]"):
        G.prepare_rmsnorm(_np((9, 4)), _np((4,)))
    with pytest.raises(ValueError, match="eps: expected a finite value"):
        G.rmsnorm_gpu(_np((4,)), _np((4,)), eps=float("nan"))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 4\)"):
        G.rmsnorm_gpu(_np((2, 4)), _np((4,)), out=DeviceArray(0, (4,), "float16", None))


def test_valid_call_runs_or_says_why_not() -> None:
    x, g, w = _np((4,)), _np((4,)), _np((3, 4))
    if edgellm_ext.cuda_available():
        y = G.fused_rmsnorm_matmul(x, g, w)
        # x = g = 1, w = 1: rmsnorm(x) = 1/sqrt(1 + eps), each output sums 4 of them.
        np.testing.assert_allclose(y.astype(np.float64), 4 / np.sqrt(1 + 1e-5), rtol=2**-10)
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            G.fused_rmsnorm_matmul(x, g, w)


def test_public_names() -> None:
    for name in G.__all__:
        assert hasattr(G, name), name
    assert "gemv" in edgellm_ext.__all__


# ------------------------------------------- the compiled ops' own checks (CUDA compiled, no device needed)
# Building a GemvOp with variant "block" or "scalar", or a RmsnormOp, touches no CUDA API (only "warp" and
# "auto" ask the device for its SM count), so these run wherever the CUDA code was compiled. The addresses are
# fake: nothing is launched.
needs_cuda_build = pytest.mark.skipif(not edgellm_ext.build_info()["cuda_compiled"],
                                      reason="edgellm_ext was built without CUDA")


W_FAKE = 1 << 32  # fake, disjoint address ranges: w [2^32, +56.6 MB), x [512, +1152), g [4096, +1152), y [8192, +96 KiB)


def _op_args(**overrides):
    args = dict(w=W_FAKE, w_dtype="float16", x=512, x_dtype="float16", g=4096, y=8192, m=49152, k=576, batch=1,
                norm=True, eps=1e-5, variant="block", owners=None)
    args.update(overrides)
    return args


@needs_cuda_build
def test_op_keeps_owners_alive_and_reports_bytes() -> None:
    import gc
    import weakref

    from edgellm_ext import _core

    class Owner:
        pass

    owner = Owner()
    ref = weakref.ref(owner)
    op = _core.GemvOp(**_op_args(owners=owner))
    del owner
    gc.collect()
    assert ref() is not None, "the op must keep the arrays behind its addresses alive"
    m, k = 49152, 576
    assert op.variant == "block" and op.kernels_per_launch == 1
    assert op.bytes_moved == m * k * 2 + k * 2 + k * 2 + m * 2  # W + x + g + y
    assert op.activation_reads_bytes == (m // 2) * 2 * k * 2  # each 2-row block re-reads x and g
    assert (op.grid_blocks, op.block_threads) == (m // 2, 256)
    plain = _core.GemvOp(**_op_args(norm=False, variant="scalar", m=7, k=63))
    assert plain.bytes_moved == 7 * 63 * 2 + 63 * 2 + 7 * 2
    assert (plain.grid_blocks, plain.block_threads) == (1, 256)
    del op
    gc.collect()
    assert ref() is None
    norm = _core.RmsnormOp(x=256, dtype="bfloat16", g=4096, out=8192, k=576, batch=2, eps=1e-5, owners=None)
    assert norm.bytes_moved == (2 * 2 + 1) * 576 * 2


@needs_cuda_build
@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(k=63), r"needs K % 8 == 0"),
        (dict(w=W_FAKE + 2, k=64), "16-byte aligned"),
        (dict(g=4104, k=64), "16-byte aligned"),
        (dict(batch=9, variant="scalar"), r"batch must be in \[1, 8\]"),
        (dict(batch=0, variant="scalar"), r"batch must be in \[1, 8\]"),
        (dict(m=0, variant="scalar"), "M must be"),
        (dict(k=0, variant="scalar"), "K must be"),
        (dict(eps=float("nan"), variant="scalar"), "eps must be finite"),
        (dict(eps=-1.0, variant="scalar"), "eps must be finite"),
        (dict(g=0, variant="scalar"), "g needs a non-null address"),
        (dict(x=0, variant="scalar"), "null device address"),
        (dict(y=2049, variant="scalar"), "aligned to their element size"),
        (dict(w_dtype="float32", variant="scalar"), "weights must be float16 or bfloat16"),
        (dict(x_dtype="int8", variant="scalar"), "dtype: expected"),
        (dict(variant="fast"), "variant: expected"),
        (dict(variant="shared", batch=2), "'shared' needs batch 1 and K <= 8192"),
        (dict(variant="shared", k=8200, g=32768, y=65536), "'shared' needs batch 1 and K <= 8192"),
        (dict(y=512, variant="scalar"), "y must not overlap"),  # y on x
        (dict(y=W_FAKE + 2 * 49152 * 576 - 2, variant="scalar"), "y must not overlap"),  # y on w's last element
        (dict(y=1024, x=960, variant="scalar", m=7, k=64), "y must not overlap"),  # y inside x's 128 bytes
        (dict(y=4096 - 2, variant="scalar", m=7), "y must not overlap"),  # y's first element before g, the rest on it
    ],
)
def test_op_rejects_bad_arguments(overrides, match) -> None:
    from edgellm_ext import _core

    with pytest.raises(ValueError, match=match):
        _core.GemvOp(**_op_args(**overrides))


@needs_cuda_build
def test_rmsnorm_op_rejects_bad_arguments() -> None:
    from edgellm_ext import _core

    ok = dict(x=256, dtype="float16", g=4096, out=8192, k=576, batch=1, eps=1e-5, owners=None)
    for overrides, match in [(dict(out=258), "overlap"), (dict(out=4096 + 64), "overlap"), (dict(k=0), "K must be"), (dict(eps=float("inf")), "eps"),
                             (dict(g=0), "null device address"), (dict(x=257), "aligned")]:
        with pytest.raises(ValueError, match=match):
            _core.RmsnormOp(**{**ok, **overrides})


@needs_cuda_build
def test_shared_max_k_matches_the_kernel() -> None:
    from edgellm_ext import _core

    assert G.SHARED_MAX_K == _core.gemv_shared_max_k()


@needs_cuda_build
def test_crossover_table_measured() -> None:
    # The "auto" table (measured on an H200, src/cuda/fused_rmsnorm_gemv.cu) on the anchor shapes with 132 SMs:
    # the block variant for few rows or K >= 4096; for many rows of short K the shared variant at batch 1, the
    # warp variant at batch 2..8.
    from edgellm_ext import _core

    expect = {(960, 576): "block", (576, 576): "block", (3072, 576): "shared", (576, 1536): "block",
              (49152, 576): "shared", (9728, 896): "shared", (896, 4864): "block", (17920, 1536): "shared",
              (1536, 8960): "block", (4096, 4096): "block", (14336, 4096): "block", (151936, 896): "shared",
              (1, 16384): "block"}
    got = {shape: _core.gemv_choose_variant(shape[0], shape[1], 1, 132) for shape in expect}
    assert got == expect
    for batch in (2, 8):
        got = {shape: _core.gemv_choose_variant(shape[0], shape[1], batch, 132) for shape in expect}
        assert got == {shape: "warp" if v == "shared" else v for shape, v in expect.items()}
