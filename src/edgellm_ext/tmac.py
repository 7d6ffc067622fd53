"""Ternary (BitNet b1.58) GEMV on the GPU with device-resident weights.

Math: ``y[b, m] = scale[m] * sum_k W[m, k] * x[b, k]`` for ``W`` in {-1, 0, +1}, a batch of 1 to 8 activation
vectors. Weights use the project's 2-bit ternary packing (``edgellm_ext.formats``; layout in
``src/cuda/tmac_gemv.h``): packed ``uint8 [M, Kp/4]`` with ``Kp = roundup(K, 64)``, code ``q = w + 1``, weight
``4j + i`` of a row in bits ``2i..2i+1`` of byte ``j``, padding weights code 1, plus ``scale: float32 [M]``.

Activations ``x: [K]`` or ``[B, K]`` (B in 1..8), float16 or float32: torch CUDA tensors and cupy arrays
zero-copy, numpy arrays copied (see :mod:`edgellm_ext.cuda`). Output ``[M]`` / ``[B, M]`` in x's dtype, or
float32 on request (``out_dtype="float32"``). Accumulation is fp32; float16 x is used exactly, float32 x is split
exactly into three bf16 terms on the tensor-core path. Rounding happens only in the fp32 accumulation, in
``scale * sum`` (fp32) and in the conversion of y to float16 (``src/cuda/tmac_gemv.cu`` states it per variant).

Variants: ``"simple"`` (CUDA cores, one warp per row; the reference), ``"mma"`` (tensor cores:
``mma.sync.m16n8k16`` with the weights decoded to fp16/bf16 and the batch as N; compute capability >= 8.0),
``"stream"`` (float16 x staged in shared memory, a persistent grid that streams the weights; x of B x K must
fit, ``_core.tmac_stream_fits(K, B)``; when each warp has two or more 256-weight items it multiplies the 2-bit
codes q = w + 1 and subtracts sum x, which halves the decode's instructions: ``launch_shape["codes"]``),
``"auto"`` (:func:`choose_variant`; "simple" on GPUs older than compute capability 8.0).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._checks import check_host_array
from .formats import (
    TERNARY_K_ALIGN,
    pack_ternary,
    ternary_invalid_code_position,
    ternary_padded_k,
    ternary_quantize,
)
from .cuda import (
    DeviceArray,
    _describe,
    as_device_array,
    finish_output,
    output_like,
    require_cuda,
    stream_handle,
)

__all__ = [
    "AUTO_VARIANT_TABLE",
    "MAX_BATCH",
    "K_ALIGN",
    "VARIANTS",
    "TernaryWeights",
    "choose_variant",
    "padded_k",
    "resolve_out_dtype",
    "resolve_variant",
    "tmac_matmul",
    "validate_activations",
    "validate_packed",
]

MAX_BATCH = 8
K_ALIGN = TERNARY_K_ALIGN  # K is zero-padded (code 1) to a multiple of this many weights
VARIANTS = ("simple", "mma", "stream")
_X_DTYPES = ("float16", "float32")
_ITEMSIZE = {"float16": 2, "float32": 4}

# The one place "auto" is decided (with choose_variant's float16 rule): rows (min_weights, variant), checked in
# order; the last row whose min_weights <= M * K wins. "simple" spends ~4 + B instructions per weight per thread
# against ~0.05 warp instructions per weight for the tensor-core kernels (src/cuda/tmac_gemv.cu), and both are
# latency-bound at the smallest shapes, so the tensor cores everywhere.
AUTO_VARIANT_TABLE: tuple[tuple[int, str], ...] = ((0, "mma"),)


def padded_k(k: int) -> int:
    """Kp = roundup(k, 64): the padded row length of the packed format, in weights (formats.ternary_padded_k)."""
    return ternary_padded_k(k)


def choose_variant(m: int, k: int, x_dtype: str = "float32", stream_fits: bool = False) -> str:
    """The variant "auto" picks for an M x K matrix (AUTO_VARIANT_TABLE), then "mma" -> "stream" for float16 x
    whose staged copy fits (``stream_fits``: ``_core.tmac_stream_fits(K, B)``): the stream kernel does the mma
    kernel's arithmetic (or, on long launches, multiplies the codes: see the module docstring) with fewer
    instructions and a grid that keeps the weights streaming; measured as fast or faster
    in CUDA graphs on all 11 shapes of that sweep and within 1% with events (bench/results/nvidia-h200/
    tmac_stream_sweep.md)."""
    chosen = AUTO_VARIANT_TABLE[0][1]
    for min_weights, variant in AUTO_VARIANT_TABLE:
        if int(m) * int(k) >= min_weights:
            chosen = variant
    if chosen == "mma" and x_dtype == "float16" and stream_fits:
        chosen = "stream"
    return chosen


def resolve_variant(variant: object, m: int, k: int, x_dtype: str = "float32", stream_fits: bool = False) -> str:
    """The concrete variant for ``variant`` ("auto", "simple", "mma" or "stream"; None means "auto")."""
    if variant is None:
        variant = "auto"
    if not isinstance(variant, str):
        raise TypeError(f"variant: expected 'auto', 'simple', 'mma' or 'stream', got {type(variant).__name__}")
    if variant == "auto":
        return choose_variant(m, k, x_dtype, stream_fits)
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected 'auto', 'simple', 'mma' or 'stream', got {variant!r}")
    return variant


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if int(k) < 1:
        raise ValueError(f"k: expected >= 1, got {int(k)}")
    return int(k)


def validate_packed(packed: object, scale: object, k: object) -> tuple[np.ndarray, np.ndarray, int]:
    """Check host packed weights and scales against the format (no GPU needed); return them and k.

    Raises TypeError (type/dtype) or ValueError (shape, non-finite scale, code 3, non-zero padding) naming the
    argument and, for bad codes, the first row and weight that is wrong."""
    k = _check_k(k)
    packed = check_host_array(packed, "packed", dtype=np.uint8, ndim=2)
    m = packed.shape[0]
    kp = padded_k(k)
    if m < 1:
        raise ValueError(f"packed: expected at least one row, got shape {packed.shape}")
    if packed.shape[1] != kp // 4:
        raise ValueError(
            f"packed: expected shape ({m}, {kp // 4}) = (M, roundup(k, 64) / 4) for k = {k}, got {packed.shape}"
        )
    scale = check_host_array(scale, "scale", dtype=np.float32, shape=(m,))
    bad_scale = ~np.isfinite(scale)
    if bad_scale.any():
        raise ValueError(f"scale: every element must be finite; scale[{int(np.argmax(bad_scale))}] is not")
    pos = ternary_invalid_code_position(packed)
    if pos is not None:
        raise ValueError(f"packed: invalid 2-bit code 3 at row {pos[0]}, weight {pos[1]} (codes are 0, 1, 2)")
    if kp > k:
        first = k // 4
        tail = packed[:, first:]
        codes = (tail[:, :, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
        codes = codes.reshape(m, -1)[:, k - 4 * first:]  # the weights k .. kp-1
        wrong = codes != 1
        if wrong.any():
            row, col = np.unravel_index(int(np.argmax(wrong)), wrong.shape)
            raise ValueError(
                f"packed: padding weight {k + col} of row {row} (k = {k}) has code {int(codes[row, col])}; "
                "padding must be code 1 (zero)"
            )
    return packed, scale, k


def validate_activations(x: object, k: int) -> tuple[int, str, tuple[int, ...]]:
    """(batch, dtype, shape) of activations x (numpy, torch, cupy, DeviceArray) for a matrix of K columns.

    Makes no CUDA call: TypeError for a wrong type/dtype, ValueError for a wrong shape, batch or layout."""
    if isinstance(x, np.ndarray):
        dtype, shape, contiguous = str(x.dtype), tuple(int(d) for d in x.shape), bool(x.flags.c_contiguous)
    elif isinstance(x, DeviceArray):
        dtype, shape, contiguous = x.dtype, tuple(x.shape), True
    else:
        _, shape, dtype, contiguous = _describe(x, "x")
    if dtype not in _X_DTYPES:
        raise TypeError(f"x: expected dtype float16 or float32, got {dtype}")
    if len(shape) not in (1, 2):
        raise ValueError(f"x: expected shape (K,) or (B, K) with K = {k}, got {shape}")
    if shape[-1] != k:
        raise ValueError(f"x: expected {k} columns (K of the weights), got shape {shape}")
    batch = 1 if len(shape) == 1 else shape[0]
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"x: batch (rows) must be in 1..{MAX_BATCH}, got {batch} (shape {shape})")
    if not contiguous:
        raise ValueError("x: must be C-contiguous (numpy.ascontiguousarray / .contiguous())")
    return batch, dtype, shape


def resolve_out_dtype(x_dtype: str, out_dtype: Optional[str]) -> str:
    """The output dtype: x's dtype unless "float32" is asked for (float16 output only for float16 x)."""
    if out_dtype is None:
        return x_dtype
    if out_dtype not in _X_DTYPES:
        raise TypeError(f"out_dtype: expected None, 'float16' or 'float32', got {out_dtype!r}")
    if x_dtype == "float32" and out_dtype == "float16":
        raise ValueError("out_dtype: float32 x gives a float32 output; float16 output is for float16 x")
    return out_dtype


def _check_no_overlap(xd: DeviceArray, outd: DeviceArray) -> None:
    # Blocks write y while others still read x: aliasing would be a race.
    if xd.address < outd.address + outd.nbytes and outd.address < xd.address + xd.nbytes:
        raise ValueError("out: must not overlap x")


class TernaryWeights:
    """Packed ternary weights [M, K] and per-row float32 scales, resident in device memory.

    Owns its device memory (freed when the object and every op prepared from it are gone); any number of
    instances may exist at once. Construct from host numpy arrays (validated, then copied once) or
    :meth:`from_float`."""

    def __init__(self, packed: np.ndarray, scale: np.ndarray, k: int, *, stream: object = None) -> None:
        packed, scale, k = validate_packed(packed, scale, k)
        require_cuda()
        self._native = _core.TernaryWeights(packed, scale, k, stream_handle(stream))

    @classmethod
    def from_float(cls, w: np.ndarray, *, stream: object = None) -> "TernaryWeights":
        """Quantize float32 weights [M, K] with ``formats.ternary_quantize`` (absmean, per row), pack them with
        ``formats.pack_ternary`` and upload."""
        w = check_host_array(w, "w", dtype=np.float32, ndim=2)
        w_int8, scale = ternary_quantize(w)
        return cls(pack_ternary(w_int8), np.ascontiguousarray(scale, dtype=np.float32), w.shape[1], stream=stream)

    @property
    def m(self) -> int:
        return int(self._native.m)

    @property
    def k(self) -> int:
        return int(self._native.k)

    @property
    def kp(self) -> int:
        return int(self._native.kp)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.m, self.k)

    @property
    def packed_bytes(self) -> int:
        """Device bytes of the packed codes, M * Kp / 4."""
        return int(self._native.packed_bytes)

    @property
    def scale_bytes(self) -> int:
        return int(self._native.scale_bytes)

    def bytes_per_launch(self, batch: int = 1, x_dtype: str = "float16", out_dtype: Optional[str] = None) -> int:
        """Bytes one GEMV must move through device memory at least: packed codes + scales + x + y."""
        if not 1 <= int(batch) <= MAX_BATCH:
            raise ValueError(f"batch: must be in 1..{MAX_BATCH}, got {batch}")
        if x_dtype not in _X_DTYPES:
            raise TypeError(f"x_dtype: expected 'float16' or 'float32', got {x_dtype!r}")
        odt = resolve_out_dtype(x_dtype, out_dtype)
        return self.packed_bytes + self.scale_bytes + int(batch) * (self.k * _ITEMSIZE[x_dtype] + self.m * _ITEMSIZE[odt])

    def _op(self, xd: DeviceArray, outd: DeviceArray, batch: int, x_dtype: str, out_dtype: str, variant: object,
            max_k_slices: int = 0) -> Any:
        _check_no_overlap(xd, outd)
        fits = x_dtype == "float16" and bool(_core.tmac_stream_fits(self.k, batch))
        concrete = resolve_variant(variant, self.m, self.k, x_dtype, fits)
        if variant in (None, "auto") and concrete != "simple" and not _core.tmac_mma_supported():
            concrete = "simple"  # the tensor-core kernels need compute capability >= 8.0; asked for, the op raises
        return _core.TmacGemvOp(self._native, xd.address, outd.address, batch, x_dtype, out_dtype, concrete,
                                max_k_slices)

    def _out_spec(self, x_shape: tuple[int, ...], x_dtype: str, out: object, out_dtype: Optional[str]) -> tuple[tuple[int, ...], str]:
        out_shape = tuple(x_shape[:-1]) + (self.m,)
        if out is not None and out_dtype is None and not isinstance(out, np.ndarray):
            out_dtype = out.dtype if isinstance(out, DeviceArray) else _describe(out, "out")[2]
            if out_dtype not in _X_DTYPES:
                raise TypeError(f"out: expected dtype float16 or float32, got {out_dtype}")
        return out_shape, resolve_out_dtype(x_dtype, out_dtype)

    def matmul(
        self,
        x: object,
        *,
        out: object = None,
        out_dtype: Optional[str] = None,
        stream: object = None,
        variant: str = "auto",
    ) -> object:
        """y = scale * (W @ x) for x: [K] or [B, K] (B in 1..8), float16 or float32; returns y: [M] or [B, M].

        The result is of x's kind (torch/cupy/numpy; numpy inputs are copied to the device and the result back)
        unless ``out`` (a device array of shape [B, M]) is given, which is then filled and returned. Runs on
        ``stream`` (None: the legacy default stream) without synchronising, except for numpy inputs."""
        batch, x_dtype, x_shape = validate_activations(x, self.k)
        out_shape, odt = self._out_spec(x_shape, x_dtype, out, out_dtype)
        resolve_variant(variant, self.m, self.k)  # reject a bad variant before copying anything
        if isinstance(out, np.ndarray):
            raise TypeError("out: must be a device array (torch, cupy, DeviceArray); numpy results are returned instead")
        xd = as_device_array(x, "x", dtypes=[x_dtype], stream=stream)
        if out is None:
            user_out, outd = output_like(x, out_shape, odt)
        else:
            outd = as_device_array(out, "out", dtypes=[odt], shape=out_shape)
            user_out = out
        handle = stream_handle(stream)
        self._op(xd, outd, batch, x_dtype, odt, variant).launch(handle)
        if xd.host is not None and not isinstance(user_out, DeviceArray):
            _core.stream_synchronize(handle)  # the device copy of x is freed on return
        return finish_output(user_out, x, stream)

    def prepare(self, x: object, out: object, *, stream: object = None, variant: str = "auto",
                max_k_slices: int = 0) -> Any:
        """The prepared op (a ``_core.Launchable``) computing ``out = matmul(x)`` on each ``launch(stream)``: for the
        timers (:class:`edgellm_ext.cuda.Timer`) and CUDA graphs. ``out`` must be a device array of shape
        [B, M] (or [M]) in x's dtype or float32. The op keeps the weights, x and out alive (a numpy x is copied
        to the device once, here). ``op.bytes_per_launch`` gives the bytes one launch moves at least.
        ``max_k_slices`` (0: the tuned default; 1..8 for "mma", 1..16 for "stream") caps the warps that split K, for
        tuning sweeps (``op.launch_shape`` shows the grid chosen)."""
        batch, x_dtype, x_shape = validate_activations(x, self.k)
        if out is None or isinstance(out, np.ndarray):
            raise TypeError("out: prepare() needs a device output array (torch, cupy or edgellm_ext.cuda.empty)")
        out_shape, odt = self._out_spec(x_shape, x_dtype, out, None)
        resolve_variant(variant, self.m, self.k)  # reject a bad variant before copying anything
        outd = as_device_array(out, "out", dtypes=[odt], shape=out_shape)
        xd = as_device_array(x, "x", dtypes=[x_dtype], stream=stream)
        op = self._op(xd, outd, batch, x_dtype, odt, variant, max_k_slices)
        op._keepalive = (xd, outd)  # x and out must outlive every launch of the op
        return op

    def __repr__(self) -> str:
        return f"TernaryWeights(m={self.m}, k={self.k}, packed_bytes={self.packed_bytes})"


def tmac_matmul(weights: TernaryWeights, x: object, **kwargs: Any) -> object:
    """``weights.matmul(x, **kwargs)``: y = scale * (W @ x) (see :meth:`TernaryWeights.matmul`)."""
    if not isinstance(weights, TernaryWeights):
        raise TypeError(f"weights: expected edgellm_ext.tmac.TernaryWeights, got {type(weights).__name__}")
    return weights.matmul(x, **kwargs)
