"""CPU dot / matvec / rmsnorm / softmax: every SIMD path against a float64 numpy reference.

Tolerances (float32 accumulation, eps32 = 2**-23 ~ 1.19e-7):
- dot, matvec: |error| <= n * eps32 * sum|a_i b_i|, the worst-case bound of any float32 summation order.
- rmsnorm: relative error <= (n + 8) * eps32 per element (the sum of squares, then one sqrt/div/mul chain).
- softmax: relative error <= (n + 16) * eps32 per element (exp is ~2 ulp; the sum of n terms).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgellm_ext
from edgellm_ext import cpu

EPS32 = float(np.finfo(np.float32).eps)
SIZES = [1, 7, 63, 65, 1000, 4097]
PATHS = cpu.simd_paths()


def test_scalar_is_always_available() -> None:
    assert PATHS[0] == "scalar"
    info = edgellm_ext.build_info()
    assert info["simd"] in PATHS
    assert set(PATHS) <= set(info["simd_compiled"])


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES)
def test_dot(rng: np.random.Generator, simd: str, n: int) -> None:
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = float(a64 @ b64)
    got = cpu.dot(a, b, simd=simd)
    assert abs(got - ref) <= n * EPS32 * float(np.abs(a64 * b64).sum())


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 63), (65, 65), (3, 1000), (9, 4097)])
def test_matvec(rng: np.random.Generator, simd: str, rows: int, cols: int) -> None:
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    x = rng.standard_normal(cols, dtype=np.float32)
    out = np.full(rows, np.nan, dtype=np.float32)  # poison: every element must be written
    got = cpu.matvec(w, x, out=out, simd=simd)
    assert got is out
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    bound = cols * EPS32 * (np.abs(w64) @ np.abs(x64))
    assert np.all(np.abs(got - w64 @ x64) <= bound)


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("batched", [False, True])
def test_rmsnorm(rng: np.random.Generator, simd: str, n: int, batched: bool) -> None:
    x = rng.standard_normal((3, n) if batched else n, dtype=np.float32) * 3
    w = rng.standard_normal(n, dtype=np.float32)
    got = cpu.rmsnorm(x, w, eps=1e-5, simd=simd)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt(np.mean(x64**2, axis=-1, keepdims=True) + 1e-5) * w
    assert got.shape == x.shape and got.dtype == np.float32
    assert np.all(np.abs(got - ref) <= (n + 8) * EPS32 * np.abs(ref))


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("batched", [False, True])
def test_softmax(rng: np.random.Generator, simd: str, n: int, batched: bool) -> None:
    x = rng.standard_normal((4, n) if batched else n, dtype=np.float32) * 8  # wide range of exponents
    got = cpu.softmax(x, simd=simd)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    ref = e / e.sum(axis=-1, keepdims=True)
    assert np.all(np.abs(got - ref) <= (n + 16) * EPS32 * ref + 1e-30)


@pytest.mark.parametrize("simd", PATHS)
def test_softmax_masked_and_all_masked(simd: str) -> None:
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    got = cpu.softmax(x, simd=simd)
    e = np.exp(np.array([0.0, 1.0]) - 1.0)
    assert got[0, 1] < 1e-30
    np.testing.assert_allclose(got[0, [0, 2]], e / e.sum(), rtol=1e-6)
    assert np.all(np.isnan(got[1]))  # no distribution over an all-masked row (as torch)


def test_simd_paths_agree_with_auto(rng: np.random.Generator) -> None:
    x = rng.standard_normal(333, dtype=np.float32)
    assert cpu.dot(x, x) == cpu.dot(x, x, simd="auto") == cpu.dot(x, x, simd=edgellm_ext.build_info()["simd"])


# ------------------------------------------------------------------------------------------- bad input
def test_wrong_dtype_names_argument() -> None:
    with pytest.raises(TypeError, match=r"b: expected dtype float32, got float64"):
        cpu.dot(np.ones(4, np.float32), np.ones(4, np.float64))
    with pytest.raises(TypeError, match=r"w: expected a numpy.ndarray of float32, got list"):
        cpu.matvec([[1.0]], np.ones(1, np.float32))  # type: ignore[arg-type]


def test_wrong_shape_names_argument() -> None:
    with pytest.raises(ValueError, match=r"b: expected shape \(4\), got \(5,\)"):
        cpu.dot(np.ones(4, np.float32), np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(3\), got \(4,\)"):
        cpu.matvec(np.ones((2, 3), np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"w: expected 2 dimensions, got shape \(3,\)"):
        cpu.matvec(np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"weight: expected shape \(5\), got \(4,\)"):
        cpu.rmsnorm(np.ones((2, 5), np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"x: expected 1 or 2 dimensions, got shape \(1, 1, 1\)"):
        cpu.softmax(np.ones((1, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"x: softmax needs at least one element"):
        cpu.softmax(np.ones((2, 0), np.float32))


def test_non_contiguous_rejected() -> None:
    w = np.ones((4, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"w: must be C-contiguous"):
        cpu.matvec(w, np.ones(3, np.float32))


def test_out_checked() -> None:
    w, x = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(2\), got \(3,\)"):
        cpu.matvec(w, x, out=np.empty(3, np.float32))
    with pytest.raises(TypeError, match=r"out: expected dtype float32, got float64"):
        cpu.matvec(w, x, out=np.empty(2, np.float64))
    ro = np.empty(2, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: must be writable"):
        cpu.matvec(w, x, out=ro)


def test_bad_simd_and_eps() -> None:
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"simd: 'sse9' is not available.*'scalar'"):
        cpu.dot(x, x, simd="sse9")
    missing = "neon" if "neon" not in PATHS else "avx2"
    with pytest.raises(ValueError, match=rf"simd: '{missing}' is not available"):
        cpu.dot(x, x, simd=missing)
    with pytest.raises(ValueError, match=r"eps: expected a finite value >= 0, got nan"):
        cpu.rmsnorm(x, x, eps=float("nan"))


def test_private_core_checks_sizes_too() -> None:
    """The compiled module guards memory safety even when called directly, bypassing the wrappers."""
    from edgellm_ext import _core

    with pytest.raises(ValueError, match=r"b: dimension 0 must be 4, got 3"):
        _core.dot_f32(np.ones(4, np.float32), np.ones(3, np.float32), "auto")
    with pytest.raises(ValueError, match=r"out: dimension 0 must be 2, got 5"):
        _core.matvec_f32(np.ones((2, 3), np.float32), np.ones(3, np.float32), np.empty(5, np.float32), "auto")
    with pytest.raises(TypeError):
        _core.dot_f32(np.ones(4, np.float64), np.ones(4, np.float64), "auto")
