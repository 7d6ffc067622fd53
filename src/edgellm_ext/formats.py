"""Reference (numpy) definitions of the weight formats; docs/formats.md is their one written description.

- GGUF/ggml block quantization Q4_0, Q4_1, Q8_0: :data:`BLOCK_DTYPES` (numpy structured dtypes that are
  byte-for-byte ggml's ``block_q4_0`` / ``block_q4_1`` / ``block_q8_0``). The reference quantizer and dequantizer
  for these are the ``gguf`` package's ``gguf.quants``; the C++ kernels are tested bit-exact against it.
- Ternary (BitNet b1.58) weights: :func:`pack_ternary`, :func:`unpack_ternary`, :func:`ternary_quantize`,
  :func:`ternary_padded_k`. The CPU kernels (``edgellm_ext.ternary``) and the CUDA T-MAC kernel read exactly this
  layout.

Ternary layout: W [M, K] with values in {-1, 0, +1} and a per-row float32 scale (y = scale * (W @ x)). Each weight
is the 2-bit code q = w + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid). K is padded with zeros (code 1) to Kp, the
next multiple of 64, so a packed row is Kp/4 bytes (a multiple of 16). The packed array is uint8 [M, Kp/4], rows
contiguous; byte j holds weights 4j..4j+3, weight 4j+i in bits 2i..2i+1.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK_DTYPES",
    "QK",
    "TERNARY_K_ALIGN",
    "pack_ternary",
    "ternary_invalid_code_position",
    "ternary_padded_k",
    "ternary_quantize",
    "unpack_ternary",
]

#: Elements per Q4_0/Q4_1/Q8_0 block.
QK = 32

#: ggml's block structs as numpy dtypes (little-endian f16 fields, no padding). For the 4-bit types byte j of
#: ``qs`` holds element j in its low nibble and element j + 16 in its high nibble.
BLOCK_DTYPES: dict[str, np.dtype] = {
    "q4_0": np.dtype([("d", "<f2"), ("qs", "u1", (16,))]),  # w = d * (nib - 8)            18 bytes
    "q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))]),  # w = d * nib + m    20 bytes
    "q8_0": np.dtype([("d", "<f2"), ("qs", "i1", (32,))]),  # w = d * q                     34 bytes
}

#: Ternary rows are padded to a multiple of this many weights (Kp/4 bytes, a multiple of 16).
TERNARY_K_ALIGN = 64


def ternary_padded_k(k: int) -> int:
    """Kp: k rounded up to a multiple of 64 (k >= 1)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    return -(-int(k) // TERNARY_K_ALIGN) * TERNARY_K_ALIGN


def pack_ternary(w: np.ndarray) -> np.ndarray:
    """Pack w: int8 [M, K] with values in {-1, 0, 1} into uint8 [M, Kp/4] (layout in the module docstring)."""
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w: expected a numpy.ndarray of int8, got {type(w).__name__}")
    if w.dtype != np.int8:
        raise TypeError(f"w: expected dtype int8 with values in {{-1, 0, 1}}, got {w.dtype}")
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"w: expected a non-empty 2-D array [M, K], got shape {w.shape}")
    bad = (w < -1) | (w > 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"w: values must be -1, 0 or 1; w[{r}, {c}] = {w[r, c]}")
    m, k = w.shape
    kp = ternary_padded_k(k)
    codes = np.ones((m, kp), dtype=np.uint8)  # padding: code 1 = weight 0
    codes[:, :k] = (w + 1).astype(np.uint8)
    c = codes.reshape(m, kp // 4, 4)
    return (c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)).astype(np.uint8)


def ternary_invalid_code_position(packed: np.ndarray) -> tuple[int, int] | None:
    """(row, weight index) of the first 2-bit code 3 in ``packed`` uint8 [M, Kp/4], or None if there is none."""
    p = np.asarray(packed)
    bad = (p & (p >> 1) & 0x55) != 0  # a code is 3 exactly when both of its bits are set
    if not bad.any():
        return None
    r, j = (int(v) for v in np.argwhere(bad)[0])
    byte = int(p[r, j])
    i = next(i for i in range(4) if (byte >> (2 * i)) & 3 == 3)
    return r, 4 * j + i


def unpack_ternary(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_ternary`: packed uint8 [M, Kp/4] -> int8 [M, k]. Raises ValueError on code 3."""
    if not isinstance(packed, np.ndarray):
        raise TypeError(f"packed: expected a numpy.ndarray of uint8, got {type(packed).__name__}")
    if packed.dtype != np.uint8:
        raise TypeError(f"packed: expected dtype uint8, got {packed.dtype}")
    kp = ternary_padded_k(k)
    if packed.ndim != 2 or packed.shape[1] != kp // 4:
        raise ValueError(f"packed: expected shape (M, {kp // 4}) for k = {k} (Kp = {kp}), got {packed.shape}")
    pos = ternary_invalid_code_position(packed)
    if pos is not None:
        raise ValueError(f"packed: invalid 2-bit code 3 at row {pos[0]}, weight {pos[1]} (codes are 0, 1, 2)")
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    codes = (packed[:, :, None] >> shifts) & 3
    return (codes.reshape(packed.shape[0], kp).astype(np.int8) - 1)[:, :k]


def ternary_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BitNet b1.58 absmean quantizer: per row scale = mean|w|, w_q = clip(round(w / scale), -1, 1).

    w: float32 [M, K] (finite) -> (w_q int8 [M, K], scale float32 [M]); w ~= scale[:, None] * w_q. A row of
    zeros gets scale 0 and w_q 0. Computed in float64, rounding half to even (numpy's round).
    """
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w: expected a numpy.ndarray of float32, got {type(w).__name__}")
    if w.dtype != np.float32:
        raise TypeError(f"w: expected dtype float32, got {w.dtype}")
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"w: expected a non-empty 2-D array [M, K], got shape {w.shape}")
    if not np.isfinite(w).all():
        r, c = np.argwhere(~np.isfinite(w))[0]
        raise ValueError(f"w: must be finite; w[{r}, {c}] = {w[r, c]}")
    w64 = w.astype(np.float64)
    scale = np.abs(w64).mean(axis=1)
    safe = np.where(scale > 0, scale, 1.0)
    w_q = np.clip(np.round(w64 / safe[:, None]), -1, 1).astype(np.int8)
    w_q[scale == 0] = 0
    return w_q, scale.astype(np.float32)
