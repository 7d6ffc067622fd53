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

__all__ = [
    "Arena",
    "ArenaExhausted",
    "KVCache",
    "KvCacheFull",
    "argmax",
    "dot",
    "layernorm",
    "matvec",
    "rmsnorm",
    "rope",
    "silu",
    "simd_paths",
    "softmax",
    "swiglu",
]


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


# ------------------------------------------------------------------------------------ norms and activations
def layernorm(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    eps: float = 1e-5,
    out: Optional[np.ndarray] = None,
    simd: Optional[str] = None,
) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * weight + bias along the last axis.

    x: [n] or [rows, n] float32; weight, bias: [n] float32; returns float32 of x's shape. Mean and (biased)
    variance are per row, computed in two passes.
    """
    x = check_host_array(x, "x", ndim=(1, 2))
    n = x.shape[-1]
    if n == 0:
        raise ValueError(f"x: layernorm needs at least one element per row, got shape {x.shape}")
    weight = check_host_array(weight, "weight", shape=(n,))
    bias = check_host_array(bias, "bias", shape=(n,))
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite value >= 0, got {eps}")
    y = _out_array(out, x.shape)
    _core.layernorm_f32(x.reshape(-1, n), weight, bias, y.reshape(-1, n), float(eps), simd_name(simd))
    return y


def silu(x: np.ndarray, *, out: Optional[np.ndarray] = None, simd: Optional[str] = None) -> np.ndarray:
    """y = x * sigmoid(x) elementwise; x: float32 of any shape (C-contiguous), returns the same shape."""
    x = check_host_array(x, "x")
    y = _out_array(out, x.shape)
    _core.silu_f32(x.reshape(-1), y.reshape(-1), simd_name(simd))
    return y


def swiglu(
    gate: np.ndarray, up: np.ndarray, *, out: Optional[np.ndarray] = None, simd: Optional[str] = None
) -> np.ndarray:
    """y = silu(gate) * up elementwise; gate, up: float32 of the same shape, returns that shape."""
    gate = check_host_array(gate, "gate")
    up = check_host_array(up, "up", shape=gate.shape)
    y = _out_array(out, gate.shape)
    _core.swiglu_f32(gate.reshape(-1), up.reshape(-1), y.reshape(-1), simd_name(simd))
    return y


def rope(
    q: np.ndarray,
    k: Optional[np.ndarray],
    pos: int,
    *,
    theta: float = 10000.0,
    mode: str = "normal",
    simd: Optional[str] = None,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Rotary position embedding, IN PLACE, on q: [n_heads, head_dim] and k: [n_kv_heads, head_dim] (float32;
    k may be None). Returns (q, k).

    Pair i of a head (i < head_dim/2) is rotated by angle pos * theta**(-2i/head_dim):
    (a, b) -> (a cos - b sin, a sin + b cos). mode "normal" (GPT-J / llama.cpp LLAMA layout): pairs
    (x[2i], x[2i+1]); mode "neox" (GPT-NeoX / HF rotate_half, e.g. Qwen2): pairs (x[i], x[i + head_dim/2]).
    head_dim must be even. pos: position, an int >= 0; theta: the rope base (freq_base), > 0.
    """
    if mode not in ("normal", "neox"):
        raise ValueError(f"mode: expected 'normal' or 'neox', got {mode!r}")
    if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or pos < 0:
        raise ValueError(f"pos: expected an int >= 0, got {pos!r}")
    if not np.isfinite(theta) or theta <= 0:
        raise ValueError(f"theta: expected a finite value > 0, got {theta}")
    q = check_host_array(q, "q", ndim=2, writable=True)
    head_dim = q.shape[1]
    if head_dim == 0 or head_dim % 2:
        raise ValueError(f"q: head_dim (last dimension) must be even and > 0, got {head_dim}")
    if k is not None:
        k = check_host_array(k, "k", shape=(None, head_dim), writable=True)
    _core.rope_f32(q, int(pos), float(theta), mode, simd_name(simd))
    if k is not None:
        _core.rope_f32(k, int(pos), float(theta), mode, simd_name(simd))
    return q, k


def argmax(x: np.ndarray, *, simd: Optional[str] = None) -> int:
    """Index of the first maximum of x: [n] float32 (n >= 1). NaN: like numpy.argmax, the first NaN is
    returned (check ``isnan(x[i])`` to detect broken logits)."""
    x = check_host_array(x, "x", ndim=1)
    if x.shape[0] == 0:
        raise ValueError("x: argmax of an empty array")
    return int(_core.argmax_f32(x, simd_name(simd)))


# -------------------------------------------------------------------------------------------- memory owners
KvCacheFull = _core.KvCacheFull  # an IndexError: append to a full layer
ArenaExhausted = _core.ArenaExhausted  # a MemoryError: the arena cannot fit an allocation


def _count(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


class KVCache:
    """Per-layer K/V cache, storage [n_kv_heads, max_seq, head_dim] per layer for K and for V (GQA-aware:
    it stores n_kv_heads heads). dtype: "float32" or "float16" (appends are float32, converted with IEEE
    round-to-nearest-even; values beyond f16 range become inf).

    Each layer has its own length: ``append(layer, k, v)`` writes position ``length(layer)``; appending to a
    full layer raises :class:`KvCacheFull` and changes nothing. ``keys(layer)`` / ``values(layer)`` are
    zero-copy, read-only numpy views [n_kv_heads, n, head_dim] of the storage dtype; a view keeps the cache's
    memory alive, but later appends and ``reset()`` change what it shows (copy it to keep a snapshot).
    ``simd``: the path of the float16 conversions (F16C on AVX2, fcvtn/fcvtl on NEON); all give the same bits.
    """

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        max_seq: int,
        head_dim: int,
        *,
        dtype: str = "float32",
        simd: Optional[str] = None,
    ):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
        self._core = _core.KvCache(
            _count(n_layers, "n_layers"), _count(n_kv_heads, "n_kv_heads"), _count(max_seq, "max_seq"),
            _count(head_dim, "head_dim"), dtype, simd_name(simd),
        )

    n_layers = property(lambda self: int(self._core.n_layers))
    n_kv_heads = property(lambda self: int(self._core.n_kv_heads))
    max_seq = property(lambda self: int(self._core.max_seq))
    head_dim = property(lambda self: int(self._core.head_dim))
    dtype = property(lambda self: str(self._core.dtype))
    simd = property(lambda self: str(self._core.simd), doc="SIMD path of the float16 conversions.")
    total_bytes = property(lambda self: int(self._core.total_bytes), doc="Bytes of K and V storage, all layers.")

    def _layer(self, layer: object) -> int:
        layer = _count(layer, "layer", minimum=0)
        if layer >= self.n_layers:
            raise IndexError(f"layer: {layer} is out of range [0, {self.n_layers})")
        return layer

    def length(self, layer: int = 0) -> int:
        """Positions stored in ``layer``."""
        return int(self._core.length(self._layer(layer)))

    def append(self, layer: int, k: np.ndarray, v: np.ndarray) -> int:
        """Store k, v: [n_kv_heads, head_dim] float32 at the next position of ``layer``; returns that position."""
        layer = self._layer(layer)
        shape = (self.n_kv_heads, self.head_dim)
        k = check_host_array(k, "k", shape=shape)
        v = check_host_array(v, "v", shape=shape)
        pos = self.length(layer)
        self._core.append(layer, k, v)
        return pos

    def keys(self, layer: int, n: Optional[int] = None) -> np.ndarray:
        """Read-only view [n_kv_heads, n, head_dim] of the first n (default: all) positions' keys."""
        layer = self._layer(layer)
        n = self.length(layer) if n is None else _count(n, "n", minimum=0)
        return self._core.keys(layer, n)

    def values(self, layer: int, n: Optional[int] = None) -> np.ndarray:
        """Read-only view [n_kv_heads, n, head_dim] of the first n (default: all) positions' values."""
        layer = self._layer(layer)
        n = self.length(layer) if n is None else _count(n, "n", minimum=0)
        return self._core.values(layer, n)

    def reset(self) -> None:
        """Set every layer's length to 0 (storage is reused, not cleared)."""
        self._core.reset()

    def __repr__(self) -> str:
        return (f"KVCache(n_layers={self.n_layers}, n_kv_heads={self.n_kv_heads}, max_seq={self.max_seq}, "
                f"head_dim={self.head_dim}, dtype={self.dtype!r})")


class Arena:
    """Bump allocator over one owned block of ``capacity_bytes`` (block start aligned to ``base_alignment``).

    ``allocate(nbytes, alignment)`` returns the offset of an ``alignment``-aligned region (alignment: a power
    of two); ``allocate_f32(count, alignment)`` returns a float32 numpy view of a fresh region. ``reset()``
    makes the whole block free again (earlier views stay valid memory, but will be overwritten by later
    allocations). An allocation that does not fit raises :class:`ArenaExhausted` (a MemoryError) and leaves
    the arena unchanged. ``high_water_bytes``: the most ever in use, across resets.
    """

    def __init__(self, capacity_bytes: int, *, base_alignment: int = 64):
        capacity_bytes = _count(capacity_bytes, "capacity_bytes", minimum=0)
        base_alignment = _count(base_alignment, "base_alignment")
        if base_alignment & (base_alignment - 1):
            raise ValueError(f"base_alignment: must be a power of two, got {base_alignment}")
        self._core = _core.Arena(capacity_bytes, base_alignment)

    @staticmethod
    def _alignment(alignment: object) -> int:
        alignment = _count(alignment, "alignment")
        if alignment & (alignment - 1):
            raise ValueError(f"alignment: must be a power of two, got {alignment}")
        return alignment

    def allocate(self, nbytes: int, alignment: int = 64) -> int:
        """Offset (from the block start) of a new region of ``nbytes``."""
        return int(self._core.allocate(_count(nbytes, "nbytes", minimum=0), self._alignment(alignment)))

    def allocate_f32(self, count: int, alignment: int = 64) -> np.ndarray:
        """A new region of ``count`` float32 as a writable numpy view (contents undefined)."""
        return self._core.allocate_f32(_count(count, "count", minimum=0), self._alignment(alignment))

    def address(self) -> int:
        """Address of the block start (for alignment checks)."""
        return int(self._core.address())

    def reset(self) -> None:
        self._core.reset()

    used_bytes = property(lambda self: int(self._core.used_bytes))
    capacity_bytes = property(lambda self: int(self._core.capacity_bytes))
    high_water_bytes = property(lambda self: int(self._core.high_water_bytes))
    base_alignment = property(lambda self: int(self._core.base_alignment))
