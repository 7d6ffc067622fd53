"""layernorm, silu, swiglu, rope and argmax: every SIMD path against a float64 numpy reference.

Tolerances (float32 eps = 1.19e-7):
- layernorm: mean/variance are float32 sums of n terms (error <~ n*eps relative to sum|x|, here O(1) values), then
  one normalisation; we allow (n + 16) * eps relative to the output scale (|y| + |bias| + 1).
- silu / swiglu: one exp (the SIMD exp_ps is ~2 ulp) and a division: 8 eps relative, plus |x| * 1e-37 + 1e-37
  absolute for results that underflow (exp_ps clamps its argument at 88.38, so silu(x) for x < -88 is
  x / exp(88.38) ~ x * 4e-39 rather than the true value, which is even closer to 0).
- rope: cos/sin are float32 roundings of exact values and each output is a 2-term dot product: 4 eps relative
  to |a| + |b| of its pair.
- argmax: exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgellm_ext import cpu

PATHS = cpu.simd_paths()
SIZES = [1, 7, 63, 65, 1000, 4097]
EPS32 = float(np.finfo(np.float32).eps)


def rng_for(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES)
def test_layernorm(simd: str, n: int) -> None:
    rng = rng_for(1, n)
    rows = 3
    x = (rng.standard_normal((rows, n)) * 3 + 1.5).astype(np.float32)  # non-zero mean exercises the centring
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got = cpu.layernorm(x, w, b, eps=1e-5, simd=simd)
    xd = x.astype(np.float64)
    mean = xd.mean(axis=1, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=1, keepdims=True)
    ref = (xd - mean) / np.sqrt(var + 1e-5) * w + b
    scale = np.abs((xd - mean) / np.sqrt(var + 1e-5) * w) + np.abs(b) + 1.0
    assert np.all(np.abs(got - ref) <= (n + 16) * EPS32 * scale)
    # 1-D input and out=
    out = np.empty(n, dtype=np.float32)
    assert cpu.layernorm(x[0], w, b, out=out, simd=simd) is out
    np.testing.assert_array_equal(out, got[0])
    inplace = x.copy()
    cpu.layernorm(inplace, w, b, out=inplace, simd=simd)
    np.testing.assert_array_equal(inplace, got)


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES)
def test_silu_swiglu(simd: str, n: int) -> None:
    rng = rng_for(2, n)
    x = (rng.standard_normal(n) * 6).astype(np.float32)
    up = rng.standard_normal(n).astype(np.float32)
    xd = x.astype(np.float64)
    silu_ref = xd / (1.0 + np.exp(-xd))
    got = cpu.silu(x, simd=simd)
    assert np.all(np.abs(got - silu_ref) <= 8 * EPS32 * np.abs(silu_ref) + np.abs(xd) * 1e-37 + 1e-37)
    got = cpu.swiglu(x, up, simd=simd)
    ref = silu_ref * up
    assert np.all(np.abs(got - ref) <= 8 * EPS32 * np.abs(ref) + np.abs(xd * up) * 1e-37 + 1e-37)
    # in place (out aliases an input element-for-element) gives the same bits
    g = x.copy()
    assert cpu.swiglu(g, up, out=g, simd=simd) is g
    np.testing.assert_array_equal(g, got)
    g = x.copy()
    cpu.silu(g, out=g, simd=simd)
    np.testing.assert_array_equal(g, cpu.silu(x, simd=simd))


@pytest.mark.parametrize("simd", PATHS)
def test_silu_extremes(simd: str) -> None:
    # -inf is excluded: its result is unspecified (see activations.h).
    x = np.array([-1000, -100, -88, -20, -1e-30, 0, 1e-30, 20, 88, 100, 1000, np.inf] * 3, np.float32)
    got = cpu.silu(x, simd=simd)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float64) / (1.0 + np.exp(-x.astype(np.float64)))
    fin = np.isfinite(x)
    assert np.all(np.isfinite(got[fin]))
    assert np.all(np.abs(got[fin] - ref[fin]) <= 8 * EPS32 * np.abs(ref[fin]) + np.abs(x[fin]) * 1e-37 + 1e-37)
    assert np.all(got[x == np.inf] == np.inf)


def rope_reference(x: np.ndarray, pos: int, theta: float, mode: str) -> np.ndarray:
    heads, d = x.shape
    i = np.arange(d // 2, dtype=np.float64)
    ang = pos * theta ** (-2.0 * i / d)
    c, s = np.cos(ang), np.sin(ang)
    xd = x.astype(np.float64)
    if mode == "normal":
        a, b = xd[:, 0::2], xd[:, 1::2]
    else:
        a, b = xd[:, : d // 2], xd[:, d // 2 :]
    ra, rb = a * c - b * s, a * s + b * c
    out = np.empty_like(xd)
    if mode == "normal":
        out[:, 0::2], out[:, 1::2] = ra, rb
    else:
        out[:, : d // 2], out[:, d // 2 :] = ra, rb
    bound = np.abs(a) + np.abs(b)
    return out, np.concatenate([bound, bound], axis=1) if mode == "neox" else np.repeat(bound, 2, axis=1)


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("mode", ["normal", "neox"])
@pytest.mark.parametrize("head_dim", [2, 6, 14, 64, 128])
@pytest.mark.parametrize("pos", [0, 1, 17, 4095, 131071])
def test_rope(simd: str, mode: str, head_dim: int, pos: int) -> None:
    rng = rng_for(3, head_dim, pos)
    q = rng.standard_normal((9, head_dim)).astype(np.float32)
    k = rng.standard_normal((3, head_dim)).astype(np.float32)  # GQA: fewer kv heads
    q_ref, q_bound = rope_reference(q, pos, 500000.0, mode)
    k_ref, k_bound = rope_reference(k, pos, 500000.0, mode)
    q2, k2 = cpu.rope(q, k, pos, theta=500000.0, mode=mode, simd=simd)
    assert q2 is q and k2 is k  # in place
    assert np.all(np.abs(q - q_ref) <= 4 * EPS32 * q_bound + 1e-30)
    assert np.all(np.abs(k - k_ref) <= 4 * EPS32 * k_bound + 1e-30)


def test_rope_layouts_differ_and_pos0_is_identity() -> None:
    rng = rng_for(4)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    a, b = x.copy(), x.copy()
    cpu.rope(a, None, 5, mode="normal")
    cpu.rope(b, None, 5, mode="neox")
    assert not np.allclose(a, b)
    c = x.copy()
    cpu.rope(c, None, 0)
    np.testing.assert_array_equal(c, x)


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES + [49152])
def test_argmax(simd: str, n: int) -> None:
    rng = rng_for(5, n)
    x = rng.standard_normal(n).astype(np.float32)
    assert cpu.argmax(x, simd=simd) == int(np.argmax(x))
    # ties: the first index of the maximum
    x[n // 3] = x[n - 1] = 10.0
    assert cpu.argmax(x, simd=simd) == n // 3
    # NaN: the first NaN, as numpy
    x[n - 1 - n // 4] = np.nan
    assert cpu.argmax(x, simd=simd) == int(np.argmax(x)) == n - 1 - n // 4
    # all -inf
    assert cpu.argmax(np.full(n, -np.inf, np.float32), simd=simd) == 0


def test_bad_input() -> None:
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        cpu.silu(x.astype(np.float64))
    with pytest.raises(ValueError, match="up: expected shape"):
        cpu.swiglu(x, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="bias: expected shape"):
        cpu.layernorm(x, x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="eps"):
        cpu.layernorm(x, x, x, eps=float("nan"))
    with pytest.raises(ValueError, match="at least one element"):
        cpu.layernorm(np.ones((2, 0), np.float32), np.ones(0, np.float32), np.ones(0, np.float32))
    with pytest.raises(ValueError, match="even"):
        cpu.rope(np.ones((2, 7), np.float32), None, 1)
    with pytest.raises(ValueError, match="k: expected shape"):
        cpu.rope(np.ones((2, 8), np.float32), np.ones((2, 6), np.float32), 1)
    with pytest.raises(ValueError, match="mode"):
        cpu.rope(np.ones((2, 8), np.float32), None, 1, mode="gptj")
    with pytest.raises(ValueError, match="pos"):
        cpu.rope(np.ones((2, 8), np.float32), None, -1)
    with pytest.raises(ValueError, match="theta"):
        cpu.rope(np.ones((2, 8), np.float32), None, 1, theta=0.0)
    ro = np.ones((2, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        cpu.rope(ro, None, 1)
    with pytest.raises(ValueError, match="empty"):
        cpu.argmax(np.ones(0, np.float32))
    with pytest.raises(ValueError, match="simd"):
        cpu.silu(x, simd="sse9")
