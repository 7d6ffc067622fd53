"""Decode attention on the GPU: FlashAttention-2 style, one query token per sequence, GQA, split-KV.

Shapes (C-contiguous): ``q`` and the output ``[B, Hq, D]``; ``k_cache``, ``v_cache`` ``[B, Hkv, max_seq, D]``;
``seq_lens`` ``[B]`` int32. ``Hq`` is a multiple of ``Hkv`` (the model's real head counts; K/V are never
replicated); ``D`` in {64, 80, 96, 128, 256}; storage float16, bfloat16 or float32 (all three the same), fp32
arithmetic, output rounded once to the storage type (the tensor-core variant, ``variant="mma"``, also rounds the
softmax weights to the storage type before multiplying by V, as FlashAttention-2 does). Device arrays (torch, cupy) are used in place; numpy
arrays are copied (see :mod:`edgellm_ext.cuda`). The kernel and its launch shape are described in
``src/cuda/fa2_decode.h``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _core
from .cuda import DeviceArray, as_device_array, describe, finish_output, from_host, output_like, stream_handle

__all__ = ["DTYPE_CODES", "HEAD_DIMS", "Fa2Decode", "fa2_decode", "kv_append", "prepare_fa2_decode"]

DTYPE_CODES = {"float16": 0, "bfloat16": 1, "float32": 2}
HEAD_DIMS = (64, 80, 96, 128, 256)
MAX_SPLITS = 128  # kMaxSplits in src/cuda/fa2_decode.cu
# Kernel variants (Fa2Variant in src/cuda/fa2_decode.h): "auto" picks per shape and device; "simt" runs fp32 FMAs
# with heads_per_block query heads per block (any dtype and head_dim); "mma" runs the products on tensor cores
# with the whole GQA group per block (fp16/bf16, head_dim 64 or 128, compute capability >= 8.0).
VARIANTS = {"auto": -1, "simt": 0, "mma": 1}
# Where the splits' partial outputs are merged (Fa2Merge in src/cuda/fa2_decode.h): "auto" picks per shape and
# device; "block" in the attention kernel, by the last block of each head group to finish; "kernel" in a second
# kernel with one block per query head (launched programmatically on compute capability >= 9.0).
MERGES = {"auto": -1, "block": 0, "kernel": 1}


@dataclass(frozen=True)
class _Shapes:
    batch: int
    q_heads: int
    kv_heads: int
    head_dim: int
    max_seq: int
    dtype: str


def _check_qkv(q: Any, k: Any, v: Any, kv_shared: bool = False) -> _Shapes:
    """Shapes and dtypes of q and the caches, checked before anything is copied or launched (kv_shared: the caches
    hold one sequence that all B queries read)."""
    (q_shape, q_dtype), (k_shape, k_dtype), (v_shape, v_dtype) = (
        describe(q, "q"), describe(k, "k_cache"), describe(v, "v_cache"))
    for name, dtype in (("q", q_dtype), ("k_cache", k_dtype), ("v_cache", v_dtype)):
        if dtype not in DTYPE_CODES:
            raise TypeError(f"{name}: expected dtype float16, bfloat16 or float32, got {dtype}")
    if len(q_shape) != 3:
        raise ValueError(f"q: expected shape (B, Hq, D), got {q_shape}")
    if len(k_shape) != 4:
        raise ValueError(f"k_cache: expected shape (B, Hkv, max_seq, D), got {k_shape}")
    batch, q_heads, head_dim = q_shape
    cache_batch = 1 if kv_shared else batch
    if k_shape[0] != cache_batch or k_shape[3] != head_dim:
        raise ValueError(f"k_cache: expected shape ({cache_batch}, Hkv, max_seq, {head_dim}), got {k_shape}"
                         + (" (kv_shared: one sequence's cache for every query)" if kv_shared else ""))
    if v_shape != k_shape:
        raise ValueError(f"v_cache: expected shape {k_shape} (as k_cache), got {v_shape}")
    if not (q_dtype == k_dtype == v_dtype):
        raise TypeError(f"q, k_cache, v_cache: dtypes must match, got {q_dtype}, {k_dtype}, {v_dtype}")
    kv_heads, max_seq = k_shape[1], k_shape[2]
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"q: head_dim must be one of {HEAD_DIMS}, got {head_dim}")
    if batch < 1 or kv_heads < 1 or max_seq < 1 or q_heads % kv_heads != 0 or q_heads < kv_heads:
        raise ValueError(f"q heads ({q_heads}) must be a positive multiple of k_cache heads ({kv_heads}); "
                         f"batch and max_seq must be >= 1 (got {batch}, {max_seq})")
    return _Shapes(batch, q_heads, kv_heads, head_dim, max_seq, q_dtype)


def _lengths(seq_lens: Any, shapes: _Shapes, stream: object) -> tuple[DeviceArray, int]:
    """Device int32 lengths and a host hint of the longest (max_seq when only the device knows them)."""
    if isinstance(seq_lens, (list, tuple)) or isinstance(seq_lens, np.ndarray):
        host = np.asarray(seq_lens)
        if host.shape != (shapes.batch,) or not np.issubdtype(host.dtype, np.integer):
            raise ValueError(f"seq_lens: expected {shapes.batch} integers, got shape {host.shape} of {host.dtype}")
        if host.min() < 1 or host.max() > shapes.max_seq:
            raise ValueError(f"seq_lens: every length must be in [1, max_seq={shapes.max_seq}], got {host.tolist()}")
        return from_host(host.astype(np.int32), stream), int(host.max())
    dev = as_device_array(seq_lens, "seq_lens", dtypes=["int32"], shape=(shapes.batch,))
    return dev, shapes.max_seq


class Fa2Decode:
    """A prepared decode-attention call (workspace allocated once) for fixed arrays: ``launch(stream)`` reruns it,
    ``op`` is the ``_core.Launchable`` for the timers and CUDA graphs. Lengths may change between launches when
    ``seq_lens`` is a device array (the kernel reads them on the device; the split count stays fixed).
    ``kv_shared``: the caches are ``[1, Hkv, max_seq, D]`` and every query b of ``q`` reads them with its own
    length ``seq_lens[b]`` (several tokens of one sequence at once, e.g. a causal prefill chunk). ``merge``: where
    the splits' partial outputs are merged ("auto" = "kernel": a second kernel; "block": inside the attention
    kernel; see MERGES); with one split there is nothing to merge and ``merge`` reads "block"."""

    def __init__(self, q: Any, k_cache: Any, v_cache: Any, seq_lens: Any, out: Any = None, *,
                 scale: Optional[float] = None, num_splits: Optional[int] = None,
                 heads_per_block: Optional[int] = None, variant: str = "auto", kv_shared: bool = False,
                 merge: str = "auto", stream: object = None) -> None:
        s = self.shapes = _check_qkv(q, k_cache, v_cache, kv_shared)
        self.kv_shared = bool(kv_shared)
        if out is not None:
            if isinstance(out, np.ndarray):
                raise TypeError("out: must be a device array (torch, cupy or DeviceArray); omit it for numpy inputs")
        self.scale = 1.0 / math.sqrt(s.head_dim) if scale is None else float(scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale: expected a finite value > 0, got {scale}")
        if num_splits is not None and not 1 <= int(num_splits) <= MAX_SPLITS:
            raise ValueError(f"num_splits: expected 1..{MAX_SPLITS} or None, got {num_splits}")
        if heads_per_block not in (None, 1, 2, 4, 8):
            raise ValueError(f"heads_per_block: expected None (auto), 1, 2, 4 or 8, got {heads_per_block}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
        if merge not in MERGES:
            raise ValueError(f"merge: expected one of {sorted(MERGES)}, got {merge!r}")
        if variant == "mma" and heads_per_block is not None:
            raise ValueError("heads_per_block: only the 'simt' variant takes it (the 'mma' one takes the whole group)")
        self._lens, max_len_hint = _lengths(seq_lens, s, stream)
        self._q = as_device_array(q, "q", dtypes=[s.dtype], stream=stream)
        self._k = as_device_array(k_cache, "k_cache", dtypes=[s.dtype], stream=stream)
        self._v = as_device_array(v_cache, "v_cache", dtypes=[s.dtype], stream=stream)
        if out is None:
            self._reference = q
            self.out, self._out = output_like(q, self._q.shape, s.dtype)
        else:
            self._reference = out
            self.out = out
            self._out = as_device_array(out, "out", dtypes=[s.dtype], shape=self._q.shape)
        self.op = _core.Fa2DecodeOp(
            s.batch, s.q_heads, s.kv_heads, s.head_dim, s.max_seq, DTYPE_CODES[s.dtype], self._q.address,
            self._k.address, self._v.address, self._lens.address, self._out.address, self.scale, max_len_hint,
            0 if num_splits is None else int(num_splits), heads_per_block or 0, VARIANTS[variant], bool(kv_shared),
            MERGES[merge])

    @property
    def num_splits(self) -> int:
        return int(self.op.num_splits)

    @property
    def heads_per_block(self) -> int:
        return int(self.op.heads_per_block)

    @property
    def variant(self) -> str:
        """The kernel chosen: "simt" (fp32 FMAs, heads_per_block heads per block) or "mma" (tensor cores)."""
        return "mma" if self.op.variant == VARIANTS["mma"] else "simt"

    @property
    def merge(self) -> str:
        """Where the splits are merged: "block" (in the attention kernel; also with a single split, which needs no
        merge) or "kernel" (a second kernel)."""
        return "kernel" if self.op.merge == MERGES["kernel"] else "block"

    def launch(self, stream: object = None) -> None:
        self.op.launch(stream_handle(stream))

    def kv_bytes(self, lengths: np.ndarray) -> int:
        """Bytes of K and V the kernel must read for these lengths (the memory-traffic floor; with kv_shared the
        longest length's rows, which every query shares)."""
        s = self.shapes
        itemsize = 4 if s.dtype == "float32" else 2
        keys = np.max(lengths) if self.kv_shared else np.sum(lengths)
        return int(2 * keys * s.kv_heads * s.head_dim * itemsize)


def prepare_fa2_decode(q: Any, k_cache: Any, v_cache: Any, seq_lens: Any, out: Any = None, **kwargs: Any) -> Fa2Decode:
    """Same as :class:`Fa2Decode` (a name that reads well beside the other ``prepare_*`` functions)."""
    return Fa2Decode(q, k_cache, v_cache, seq_lens, out, **kwargs)


def fa2_decode(q: Any, k_cache: Any, v_cache: Any, seq_lens: Any, *, scale: Optional[float] = None, out: Any = None,
               num_splits: Optional[int] = None, stream: object = None) -> Any:
    """out[b, h] = softmax(scale * q[b, h] . K[b, h // G, :seq_lens[b]]^T) @ V[b, h // G, :seq_lens[b]].

    ``seq_lens``: host integers (validated to be in [1, max_seq]) or a device int32 array (read on the device,
    clamped to [0, max_seq]; 0 gives zeros). Returns ``out`` (a new array of q's kind when None; numpy inputs
    give a numpy result). A convenience: it allocates a workspace and synchronises the stream before returning;
    use :class:`Fa2Decode` to prepare once and launch many times."""
    plan = Fa2Decode(q, k_cache, v_cache, seq_lens, out, scale=scale, num_splits=num_splits, stream=stream)
    plan.launch(stream)
    _core.stream_synchronize(stream_handle(stream))
    return finish_output(plan.out, plan._reference, stream)


def kv_append(k_cache: Any, v_cache: Any, k_new: Any, v_new: Any, positions: Any, *, stream: object = None) -> None:
    """Write this step's K/V rows ``k_new``, ``v_new`` ``[B, Hkv, D]`` into the caches at ``positions[b]``.

    The caches must be device arrays (torch, cupy or DeviceArray: a numpy cache would be a copy). ``positions``:
    host integers, each checked to be in [0, max_seq) (an error otherwise: the cache never wraps or overwrites its
    last slot), or a device int32 array (positions outside the cache are skipped by the kernel)."""
    dtypes = list(DTYPE_CODES)
    for name, value in (("k_cache", k_cache), ("v_cache", v_cache)):
        if isinstance(value, np.ndarray):
            raise TypeError(f"{name}: must be a device array (torch, cupy or edgellm_ext.cuda.DeviceArray), got numpy")
    k = as_device_array(k_cache, "k_cache", dtypes=dtypes, ndim=4)
    v = as_device_array(v_cache, "v_cache", dtypes=[k.dtype], shape=k.shape)
    batch, kv_heads, max_seq, head_dim = k.shape
    kn = as_device_array(k_new, "k_new", dtypes=[k.dtype], shape=(batch, kv_heads, head_dim), stream=stream)
    vn = as_device_array(v_new, "v_new", dtypes=[k.dtype], shape=(batch, kv_heads, head_dim), stream=stream)
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"k_cache: head_dim must be one of {HEAD_DIMS}, got {head_dim}")
    if isinstance(positions, (list, tuple, np.ndarray, int)):
        host = np.atleast_1d(np.asarray(positions))
        if host.shape != (batch,) or not np.issubdtype(host.dtype, np.integer):
            raise ValueError(f"positions: expected {batch} integers, got shape {host.shape} of {host.dtype}")
        if host.min() < 0 or host.max() >= max_seq:
            raise ValueError(f"positions: every position must be in [0, max_seq={max_seq}), got {host.tolist()} "
                             "(the cache is full)")
        pos = from_host(host.astype(np.int32), stream)
    else:
        pos = as_device_array(positions, "positions", dtypes=["int32"], shape=(batch,))
    op = _core.KvAppendOp(batch, kv_heads, head_dim, max_seq, DTYPE_CODES[k.dtype], k.address, v.address,
                          kn.address, vn.address, pos.address)
    op.launch(stream_handle(stream))
    # The host copies above (numpy k_new/positions) are freed when this returns: wait for the kernel first.
    _core.stream_synchronize(stream_handle(stream))
