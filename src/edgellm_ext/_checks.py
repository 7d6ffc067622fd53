"""Argument validation shared by the typed wrappers: every message names the argument and says what was
expected and what was given."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def check_host_array(
    value: object,
    name: str,
    *,
    dtype: np.dtype | type = np.float32,
    ndim: Optional[Sequence[int] | int] = None,
    shape: Optional[Sequence[Optional[int]]] = None,
    writable: bool = False,
) -> np.ndarray:
    """Return ``value`` if it is a C-contiguous numpy array of ``dtype`` (and ``ndim``/``shape``), else raise.

    ``shape`` entries of None match any length. Raises TypeError for a wrong type or dtype and ValueError for a
    wrong shape, a non-contiguous array or a read-only output.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of {np.dtype(dtype)}, got {type(value).__name__}")
    if value.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected {want} dimensions, got shape {value.shape}")
    if shape is not None:
        if len(shape) != value.ndim or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {value.shape}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (use numpy.ascontiguousarray), got strides {value.strides}")
    if writable and not value.flags.writeable:
        raise ValueError(f"{name}: must be writable")
    return value


def simd_name(simd: Optional[str]) -> str:
    """Normalise the ``simd`` argument: None means "auto"."""
    if simd is None:
        return "auto"
    if not isinstance(simd, str):
        raise TypeError(f"simd: expected a str such as 'auto', 'scalar', 'avx2' or 'neon', got {type(simd).__name__}")
    return simd
