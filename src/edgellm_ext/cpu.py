"""CPU kernels (float32 in, float32 out, float32 accumulation).

Each function takes ``simd``: None or "auto" for the fastest path this CPU supports, or "scalar", "avx2",
"neon" to force one (ValueError if that path is not available; see :func:`simd_paths`). Inputs are
C-contiguous float32 numpy arrays; results are new arrays unless ``out`` is given (then ``out`` is filled and
returned).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._checks import check_host_array, simd_name

__all__ = ["dot", "matvec", "rmsnorm", "simd_paths", "softmax"]


def simd_paths() -> list[str]:
    """SIMD paths compiled into this build that this CPU can run, "scalar" first."""
    return list(_core.simd_paths())


def _out_array(out: Optional[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    return check_host_array(out, "out", shape=shape, writable=True)


def dot(a: np.ndarray, b: np.ndarray, *, simd: Optional[str] = None) -> float:
    """sum(a * b) for a, b: [n] float32."""
    a = check_host_array(a, "a", ndim=1)
    b = check_host_array(b, "b", shape=(a.shape[0],))
    return float(_core.dot_f32(a, b, simd_name(simd)))


def matvec(w: np.ndarray, x: np.ndarray, *, out: Optional[np.ndarray] = None, simd: Optional[str] = None) -> np.ndarray:
    """y = w @ x for w: [rows, cols] (row-major), x: [cols]; returns y: [rows] float32."""
    w = check_host_array(w, "w", ndim=2)
    x = check_host_array(x, "x", shape=(w.shape[1],))
    y = _out_array(out, (w.shape[0],))
    _core.matvec_f32(w, x, y, simd_name(simd))
    return y


def rmsnorm(
    x: np.ndarray, weight: np.ndarray, *, eps: float = 1e-5, out: Optional[np.ndarray] = None, simd: Optional[str] = None
) -> np.ndarray:
    """y = x / sqrt(mean(x**2, axis=-1) + eps) * weight, for x: [n] or [rows, n], weight: [n]."""
    x = check_host_array(x, "x", ndim=(1, 2))
    n = x.shape[-1]
    weight = check_host_array(weight, "weight", shape=(n,))
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite value >= 0, got {eps}")
    y = _out_array(out, x.shape)
    _core.rmsnorm_f32(x.reshape(-1, n), weight, y.reshape(-1, n), float(eps), simd_name(simd))
    return y


def softmax(x: np.ndarray, *, out: Optional[np.ndarray] = None, simd: Optional[str] = None) -> np.ndarray:
    """Softmax along the last axis of x: [n] or [rows, n]. A row of all -inf gives NaN (no distribution)."""
    x = check_host_array(x, "x", ndim=(1, 2))
    if x.shape[-1] == 0:
        raise ValueError("x: softmax needs at least one element per row, got shape " + str(x.shape))
    y = _out_array(out, x.shape)
    _core.softmax_f32(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]), simd_name(simd))
    return y
