"""GGUF/ggml block quantization on the CPU: Q4_0, Q4_1, Q8_0 (block layouts: docs/formats.md).

A ``qtype`` is "q4_0", "q4_1", "q8_0" (any case) or the ggml type id (2, 3, 8; ``gguf.GGMLQuantizationType``
members work). Blocks are uint8 arrays shaped like ``gguf.quants`` makes them: quantizing float32 [..., k] gives
uint8 [..., k/32 * block_bytes] (18, 20 or 34 bytes per 32 weights). :func:`quantize` and :func:`dequantize` are
bit-exact with ``gguf.quants`` (and so with ggml's reference quantize_row_q*_ref / dequantize_row_q*).

Scale checks: :func:`dequantize` and :func:`matvec` reject blocks whose f16 scale ``d`` (or Q4_1 minimum ``m``)
is NaN/Inf with a ValueError naming the row and block, unless ``check_scales=False``. :func:`dequantize` scans the
scales first. :func:`matvec` checks after the product, for free: a non-finite scale always makes its row's output
non-finite (Inf * anything is Inf or NaN, and neither leaves a sum), so only when some output is not finite are
the scales scanned (a scan touches every cache line of the weights: it would cost about half a matvec). When it
raises, ``out`` (if given) has been overwritten.

``simd``: None/"auto" for the fastest path, or "scalar"/"avx2"/"neon" (see :func:`edgellm_ext.cpu.simd_paths`).
"""

from __future__ import annotations

import operator
from typing import Optional, Sequence, Union

import numpy as np

from . import _core
from ._checks import check_host_array, simd_name
from .formats import BLOCK_DTYPES, QK

__all__ = ["QK", "QTYPES", "block_bytes", "check_scales", "dequantize", "matvec", "qtype_name", "quantize"]

#: Supported types: name -> ggml type id.
QTYPES: dict[str, int] = {"q4_0": 2, "q4_1": 3, "q8_0": 8}
_NAMES_BY_ID = {v: k for k, v in QTYPES.items()}

QType = Union[str, int]


def qtype_name(qtype: QType) -> str:
    """Normalise a qtype ("q4_0", "Q4_0", 2, gguf.GGMLQuantizationType.Q4_0, ...) to "q4_0"/"q4_1"/"q8_0"."""
    if isinstance(qtype, str):
        name = qtype.lower()
        if name in QTYPES:
            return name
        raise ValueError(f"qtype: expected one of {sorted(QTYPES)}, got {qtype!r}")
    if isinstance(qtype, bool):
        raise TypeError("qtype: expected a str such as 'q4_0' or a ggml type id, got bool")
    try:
        type_id = operator.index(qtype)  # ints, numpy ints and IntEnum members
    except TypeError:
        raise TypeError(f"qtype: expected a str such as 'q4_0' or a ggml type id, got {type(qtype).__name__}") from None
    if type_id not in _NAMES_BY_ID:
        label = getattr(qtype, "name", str(type_id))
        raise ValueError(f"qtype: ggml type {label} (id {type_id}) is not supported; supported: Q4_0 (2), Q4_1 (3), Q8_0 (8)")
    return _NAMES_BY_ID[type_id]


def block_bytes(qtype: QType) -> int:
    """Bytes per block of 32 weights: 18 (q4_0), 20 (q4_1), 34 (q8_0)."""
    return BLOCK_DTYPES[qtype_name(qtype)].itemsize


def _first_nonfinite(x: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
    return f"x[{', '.join(map(str, idx))}] = {x[idx]}"


def quantize(x: np.ndarray, qtype: QType) -> np.ndarray:
    """Quantize x: float32 [..., k] (k a multiple of 32, all finite) to uint8 blocks [..., k/32 * block_bytes].

    Same rounding as gguf.quants.quantize (bit-exact). Raises ValueError when a block's scale would overflow
    float16 (|x| above about 5e5 for q4_0, 8e6 for q8_0) since such blocks could not be dequantized.
    """
    name = qtype_name(qtype)
    x = check_host_array(x, "x", dtype=np.float32)
    if x.ndim < 1 or x.shape[-1] == 0 or x.shape[-1] % QK != 0:
        raise ValueError(f"x: the last dimension must be a positive multiple of {QK}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"x: inputs must be finite; {_first_nonfinite(x)}")
    k = x.shape[-1]
    out = np.empty((*x.shape[:-1], k // QK * block_bytes(name)), dtype=np.uint8)
    _core.quant_quantize(QTYPES[name], x.reshape(-1, k), out.reshape(-1))
    return out


def _check_blocks(blocks: object, name: str, qtype: str) -> np.ndarray:
    blocks = check_host_array(blocks, name, dtype=np.uint8)
    bb = block_bytes(qtype)
    if blocks.ndim < 1 or blocks.shape[-1] == 0 or blocks.shape[-1] % bb != 0:
        raise ValueError(
            f"{name}: the last dimension must be a positive multiple of the {qtype} block size ({bb} bytes); got shape "
            f"{blocks.shape} (truncated or not {qtype} data?)"
        )
    return blocks


def check_scales(blocks: np.ndarray, qtype: QType) -> None:
    """Raise ValueError naming the row and block of the first NaN/Inf scale d (or Q4_1 minimum m) in blocks."""
    name = qtype_name(qtype)
    _check_scales(_check_blocks(blocks, "blocks", name), name)


def _check_scales(blocks: np.ndarray, name: str) -> None:
    rows = blocks.size // blocks.shape[-1]
    _core.quant_check_scales(QTYPES[name], blocks.reshape(-1), rows, blocks.shape[-1] // block_bytes(name))


def dequantize(
    blocks: np.ndarray,
    qtype: QType,
    shape: Optional[Sequence[int]] = None,
    *,
    check_scales: bool = True,
    simd: Optional[str] = None,
) -> np.ndarray:
    """uint8 blocks [..., n * block_bytes] -> float32 [..., n * 32] (or reshaped to ``shape``, whose element
    count must match). Bit-exact with gguf.quants.dequantize on every SIMD path."""
    name = qtype_name(qtype)
    blocks = _check_blocks(blocks, "blocks", name)
    n_elems = blocks.shape[-1] // block_bytes(name) * QK
    natural = (*blocks.shape[:-1], n_elems)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) != int(np.prod(natural, dtype=np.int64)):
            raise ValueError(f"shape: {shape} holds a different number of elements than the blocks {natural}")
    if check_scales:
        _check_scales(blocks, name)
    out = np.empty(natural, dtype=np.float32)
    _core.quant_dequantize(QTYPES[name], blocks.reshape(-1), out.reshape(-1), simd_name(simd))
    return out if shape is None else out.reshape(shape)


def matvec(
    w_blocks: np.ndarray,
    qtype: QType,
    x: np.ndarray,
    *,
    activations: str = "f32",
    n_threads: int = 1,
    check_scales: bool = True,
    out: Optional[np.ndarray] = None,
    simd: Optional[str] = None,
) -> np.ndarray:
    """y = W @ x for W: [rows, cols] stored as uint8 blocks [rows, cols/32 * block_bytes] (one row of blocks per
    matrix row, as gguf.GGUFReader returns a quantized tensor), x: float32 [cols], cols a multiple of 32.
    Returns y: float32 [rows].

    activations="f32": each row is the float32 dot product of the dequantized row with x.
    activations="q8_0": x is quantized to Q8_0 first and each block's integer dot product is exact, scaled by
    d_w * d_x in float32 (ggml's vec_dot_q4_0_q8_0 scheme; for q4_1 the activation block sums are exact where ggml's
    Q8_1 stores them as f16). Faster, and the result carries x's Q8_0 rounding error.
    n_threads: rows are split across this many threads (std::thread per call).
    check_scales: see the module docstring (free unless an output is not finite).
    """
    name = qtype_name(qtype)
    if activations not in ("f32", "q8_0"):
        raise ValueError(f"activations: expected 'f32' or 'q8_0', got {activations!r}")
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads: expected an int >= 1, got {n_threads!r}")
    x = check_host_array(x, "x", dtype=np.float32, ndim=1)
    cols = x.shape[0]
    if cols == 0 or cols % QK != 0:
        raise ValueError(f"x: length (cols) must be a positive multiple of {QK}, got {cols}")
    w_blocks = check_host_array(w_blocks, "w_blocks", dtype=np.uint8, ndim=2)
    row_bytes = cols // QK * block_bytes(name)
    if w_blocks.shape[1] != row_bytes:
        raise ValueError(
            f"w_blocks: expected shape (rows, {row_bytes}) for cols = {cols} in {name} ({block_bytes(name)} bytes per "
            f"32 weights), got {w_blocks.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"x: must be finite; {_first_nonfinite(x)}")
    rows = w_blocks.shape[0]
    y = np.empty(rows, dtype=np.float32) if out is None else check_host_array(out, "out", shape=(rows,), writable=True)
    if out is not None and (np.shares_memory(y, x) or np.shares_memory(y, w_blocks)):
        raise ValueError("out: must not overlap x or w_blocks (x is read while out is written)")
    _core.quant_matvec(QTYPES[name], w_blocks, x, y, activations, simd_name(simd), int(n_threads))
    if check_scales and not np.isfinite(y).all():
        _check_scales(w_blocks, name)  # raises if a scale is the cause; otherwise the sums overflowed float32
    return y
