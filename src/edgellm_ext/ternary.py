"""Ternary (BitNet b1.58) matrix-vector products on the CPU, T-MAC style.

Format (docs/formats.md, numpy reference in :mod:`edgellm_ext.formats`): packed uint8 [M, Kp/4] of 2-bit codes
w + 1, K padded with zeros to Kp = next multiple of 64; per-row float32 scale [M]; y = scale * (W @ x).

Methods (``method=``):

- ``"lut"``: one 16-entry float32 table per pair of activations, indexed by the packed nibbles; float32
  accumulation. Scalar code on every ``simd`` path.
- ``"lut_int8"``: the tables quantized to int8 with one scale per 32 activations, looked up with AVX2 pshufb /
  NEON tbl 16 rows at a time; exact integer sums per block, double accumulation: every path gives the same bits.
  Each lookup is off by at most half its block's table scale (see :func:`lut_int8_error_bound`).
- ``"decode"``: decode each 2-bit code to -1/0/+1 and multiply-add in float32 (the baseline).

``n_threads``: rows are split across this many threads. ``simd``: None/"auto", "scalar", "avx2", "neon".
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._checks import check_host_array, simd_name
from .formats import pack_ternary, ternary_invalid_code_position, ternary_padded_k

__all__ = ["METHODS", "TernaryMatrix", "lut_int8_error_bound", "ternary_matvec"]

METHODS = ("lut", "lut_int8", "decode")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return method


def _check_threads(n_threads: int) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads: expected an int >= 1, got {n_threads!r}")
    return int(n_threads)


def _check_matrix(packed: object, scale: object, k: int) -> tuple[np.ndarray, np.ndarray]:
    kp = ternary_padded_k(k)
    packed = check_host_array(packed, "packed", dtype=np.uint8, ndim=2)
    if packed.shape[0] < 1 or packed.shape[1] != kp // 4:
        raise ValueError(
            f"packed: expected shape (M >= 1, {kp // 4}) for k = {k} (rows padded to Kp = {kp} weights, 4 per byte), "
            f"got {packed.shape}"
        )
    scale = check_host_array(scale, "scale", dtype=np.float32, shape=(packed.shape[0],))
    if not np.isfinite(scale).all():
        i = int(np.argwhere(~np.isfinite(scale))[0][0])
        raise ValueError(f"scale: must be finite; scale[{i}] = {scale[i]}")
    return packed, scale


def _check_codes(packed: np.ndarray) -> None:
    pos = ternary_invalid_code_position(packed)
    if pos is not None:
        raise ValueError(f"packed: invalid 2-bit code 3 at row {pos[0]}, weight {pos[1]} (codes are 0, 1, 2)")


def ternary_matvec(
    packed: np.ndarray,
    scale: np.ndarray,
    x: np.ndarray,
    *,
    k: Optional[int] = None,
    method: str = "lut_int8",
    n_threads: int = 1,
    check_codes: bool = True,
    out: Optional[np.ndarray] = None,
    simd: Optional[str] = None,
) -> np.ndarray:
    """y = scale * (W @ x) for packed uint8 [M, Kp/4], scale float32 [M], x float32 [k]; returns float32 [M].

    k defaults to len(x) (if given it must equal len(x)). check_codes scans packed for the invalid code 3
    (a pass over the weights; :class:`TernaryMatrix` does it once instead of per call).
    """
    x = check_host_array(x, "x", dtype=np.float32, ndim=1)
    if k is None:
        k = x.shape[0]
    elif k != x.shape[0]:
        raise ValueError(f"x: expected length k = {k}, got {x.shape[0]}")
    packed, scale = _check_matrix(packed, scale, k)
    if not np.isfinite(x).all():
        i = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"x: must be finite; x[{i}] = {x[i]}")
    if check_codes:
        _check_codes(packed)
    m = packed.shape[0]
    y = np.empty(m, dtype=np.float32) if out is None else check_host_array(out, "out", shape=(m,), writable=True)
    if out is not None and any(np.shares_memory(y, a) for a in (x, packed, scale)):
        raise ValueError("out: must not overlap x, packed or scale (they are read while out is written)")
    _core.ternary_matvec(packed, scale, x, y, _check_method(method), simd_name(simd), _check_threads(n_threads))
    return y


class TernaryMatrix:
    """A packed ternary matrix W [m, k] with per-row scales, validated once (shape, dtype, finite scales, no
    code 3); :meth:`matvec` then skips the per-call code scan. Holds references to the given arrays."""

    def __init__(self, packed: np.ndarray, scale: np.ndarray, k: int) -> None:
        self.packed, self.scale = _check_matrix(packed, scale, k)
        _check_codes(self.packed)
        self.k = int(k)

    @classmethod
    def from_float(cls, w: np.ndarray) -> "TernaryMatrix":
        """Absmean-quantize float32 w [m, k] (formats.ternary_quantize) and pack it."""
        from .formats import ternary_quantize

        w_q, scale = ternary_quantize(w)
        return cls(pack_ternary(w_q), scale, w.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.k)

    def matvec(
        self,
        x: np.ndarray,
        *,
        method: str = "lut_int8",
        n_threads: int = 1,
        out: Optional[np.ndarray] = None,
        simd: Optional[str] = None,
    ) -> np.ndarray:
        """y = scale * (W @ x) for x float32 [k]; see :func:`ternary_matvec`."""
        return ternary_matvec(
            self.packed, self.scale, x, k=self.k, method=method, n_threads=n_threads, check_codes=False, out=out, simd=simd
        )


def lut_int8_error_bound(w: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Worst-case |y_lut_int8 - y_exact| per row (float64 [M]) for int8 W [M, k] in {-1, 0, 1}.

    Per block b of 32 activations the int8 table scale is s_b = max over its 16 pairs of (|x0| + |x1|) / 127.
    A table entry t = (q0-1) x0 + (q1-1) x1 is stored as round(t / s_b), off by at most s_b / 2 after scaling
    back, plus the float32 rounding of t and of t / s_b (each below 2^-24 relative, |t| <= 127 s_b: < 2^-16 s_b in
    all); a pair of two zero weights looks up the entry 0, which is exact. So
        |err_r| <= |scale_r| * sum_b s_b * (1/2 + 2^-16) * (pairs of row r in block b with a nonzero weight)
    plus the double accumulation and final float32 rounding (|y| 2^-24, added here as |y_exact| 2^-23).
    """
    m, k = w.shape
    kp = ternary_padded_k(k)
    xp = np.zeros(kp, dtype=np.float64)
    xp[:k] = x
    wp = np.zeros((m, kp), dtype=np.int8)
    wp[:, :k] = w
    pair_abs = np.abs(xp[0::2]) + np.abs(xp[1::2])  # [kp/2]
    s_b = pair_abs.reshape(-1, 16).max(axis=1) / 127.0  # [kp/32]
    nonzero_pairs = ((wp[:, 0::2] != 0) | (wp[:, 1::2] != 0)).reshape(m, -1, 16).sum(axis=2)  # [m, kp/32]
    y_exact = np.abs(scale.astype(np.float64) * (wp[:, :k].astype(np.float64) @ xp[:k]))
    return np.abs(scale.astype(np.float64)) * (nonzero_pairs @ s_b) * (0.5 + 2.0**-16) + y_exact * 2.0**-23
