"""GEMV, fused RMSNorm + GEMV and RMSNorm on the GPU, for decode (batch 1 to 8).

- :func:`gemv`: ``y = x @ w.T`` (``y[b, m] = sum_k w[m, k] * x[b, k]``).
- :func:`fused_rmsnorm_matmul`: ``y = rmsnorm(x) * g @ w.T`` in ONE kernel launch:
  ``y[b, m] = sum_k w[m, k] * x[b, k] * inv_rms[b] * g[k]``, ``inv_rms[b] = 1 / sqrt(mean_k x[b, k]^2 + eps)``;
  the normalised activation is never written anywhere (each warp accumulates ``x^2`` from the same x chunks it
  multiplies and applies ``inv_rms`` to its sums at the end). Any K, any M.
- :func:`rmsnorm_gpu`: ``out = rmsnorm(x) * g`` on its own (the first of the two launches the fused op replaces).

Dtypes: w float16 or bfloat16, ``[M, K]`` row-major; x ``[K]`` or ``[B, K]`` (B = 1..8) float16, bfloat16 or
float32; g ``[K]`` of x's dtype. Accumulation is float32; the output has x's dtype and shape ``[M]`` or ``[B, M]``.

Arrays: torch CUDA tensors and ``__cuda_array_interface__`` objects (cupy) are used zero-copy (the caller owns
them, so weights stay resident on the device between calls); numpy arrays are copied to the device (and a
numpy-input result copied back); :class:`edgellm_ext.cuda.DeviceArray` (e.g. from ``cuda.from_host(w)``) keeps a
numpy weight resident. All arrays C-contiguous. ``out`` (optional) must be a device array.

``variant``: "auto" (the crossover table in src/cuda/fused_rmsnorm_gemv.cu, chosen by shape), "warp" (2 rows
per warp: many rows), "block" (a block of 8 warps splits K for 2 rows: few rows, long K), "shared" (batch 1,
K <= 8192: as "warp", with x converted once per block into shared memory) or "scalar" (any K and alignment; slow).
The vector variants (all but "scalar") need K % 8 == 0 and 16-byte aligned w, x, g ("auto" falls back to
"scalar" otherwise; forcing one raises ValueError).

Benchmarks use the ``prepare_*`` functions: each returns a ``_core.Launchable`` (``GemvOp``, ``RmsnormOp``, or
``RmsnormThenGemvOp``: the separate norm + GEMV baseline, two launches) with its arguments fixed, for
:class:`edgellm_ext.cuda.Timer`, exposing ``bytes_moved`` (compulsory device memory bytes per launch) and, for
GEMV ops, ``variant`` (and ``activation_reads_bytes`` for ``GemvOp``).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Optional

import numpy as np

from . import _core
from . import cuda as _cuda
from .cuda import DeviceArray

__all__ = [
    "ACTIVATION_DTYPES",
    "MAX_BATCH",
    "SHARED_MAX_K",
    "VARIANTS",
    "WEIGHT_DTYPES",
    "choose_variant",
    "fused_rmsnorm_matmul",
    "gemv",
    "prepare_fused_rmsnorm_matmul",
    "prepare_gemv",
    "prepare_rmsnorm",
    "prepare_rmsnorm_then_gemv",
    "rmsnorm_gpu",
]

WEIGHT_DTYPES = ("float16", "bfloat16")
ACTIVATION_DTYPES = ("float16", "bfloat16", "float32")
VARIANTS = ("auto", "warp", "block", "scalar", "shared")
# The "shared" variant's longest K (kGemvSharedMaxK in src/cuda/fused_rmsnorm_gemv.h; a test checks the two agree),
# here so that the check runs before any CUDA call, also in builds without CUDA.
SHARED_MAX_K = 8192
MAX_BATCH = 8
_MAX_DIM = 2**31 - 1  # the kernels index rows and columns with 32-bit integers


def _shape_dtype(value: object, name: str) -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of an accepted array, without touching the GPU; TypeError/ValueError otherwise."""
    if isinstance(value, DeviceArray):
        return tuple(value.shape), value.dtype
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous (use numpy.ascontiguousarray), got strides {value.strides}")
        return tuple(int(d) for d in value.shape), str(value.dtype)
    _, shape, dtype, contiguous = _cuda._describe(value, name)
    if not contiguous:
        raise ValueError(f"{name}: must be C-contiguous (call .contiguous() / cupy.ascontiguousarray)")
    return shape, dtype


def _check_dtype(dtype: str, allowed: tuple[str, ...], name: str) -> None:
    if dtype not in allowed:
        raise TypeError(f"{name}: expected dtype {' or '.join(allowed)}, got {dtype}")


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise TypeError(f"eps: expected a float, got {type(eps).__name__}")
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps: expected a finite value >= 0, got {value}")
    return value


def _check_variant(variant: object) -> str:
    if not isinstance(variant, str):
        raise TypeError(f"variant: expected one of {', '.join(VARIANTS)}, got {type(variant).__name__}")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return variant


def _check_activation(x: object) -> tuple[tuple[int, ...], str, int, int]:
    """(shape, dtype, batch, K) of x: [K] or [B, K] with 1 <= B <= 8."""
    shape, dtype = _shape_dtype(x, "x")
    _check_dtype(dtype, ACTIVATION_DTYPES, "x")
    if len(shape) not in (1, 2):
        raise ValueError(f"x: expected shape (K,) or (B, K), got {shape}")
    batch = 1 if len(shape) == 1 else shape[0]
    k = shape[-1]
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"x: batch B must be in [1, {MAX_BATCH}], got shape {shape}")
    if not 1 <= k <= _MAX_DIM:
        raise ValueError(f"x: K must be in [1, 2^31), got shape {shape}")
    return shape, dtype, batch, k


def _check_norm_weight(g: object, k: int, x_dtype: str) -> None:
    shape, dtype = _shape_dtype(g, "g")
    if dtype != x_dtype:
        raise TypeError(f"g: expected dtype {x_dtype} (x's dtype), got {dtype}")
    if shape != (k,):
        raise ValueError(f"g: expected shape ({k},), got {shape}")


def _check_out(out: object, shape: tuple[int, ...], dtype: str) -> None:
    if isinstance(out, np.ndarray):
        raise TypeError("out: expected a device array (torch CUDA tensor, cupy array or edgellm_ext DeviceArray), "
                        "got a numpy array; omit out to get a numpy result for numpy inputs")
    out_shape, out_dtype = _shape_dtype(out, "out")
    if out_dtype != dtype:
        raise TypeError(f"out: expected dtype {dtype} (x's dtype), got {out_dtype}")
    if out_shape != shape:
        raise ValueError(f"out: expected shape {shape}, got {out_shape}")


def _check_matmul(x: object, w: object, g: object, out: object, *, norm: bool, eps: object,
                  variant: object) -> dict[str, Any]:
    """Everything a GEMV launch needs, validated without the GPU."""
    x_shape, x_dtype, batch, k = _check_activation(x)
    w_shape, w_dtype = _shape_dtype(w, "w")
    _check_dtype(w_dtype, WEIGHT_DTYPES, "w")
    if len(w_shape) != 2:
        raise ValueError(f"w: expected shape (M, {k}), got {w_shape}")
    if w_shape[1] != k:
        raise ValueError(f"w: expected shape (M, {k}) (K from x), got {w_shape}")
    m = w_shape[0]
    if not 1 <= m <= _MAX_DIM:
        raise ValueError(f"w: M must be in [1, 2^31), got shape {w_shape}")
    eps_value = 0.0
    if norm:
        _check_norm_weight(g, k, x_dtype)
        eps_value = _check_eps(eps)
    out_shape = (m,) if len(x_shape) == 1 else (batch, m)
    if out is not None:
        _check_out(out, out_shape, x_dtype)
    variant = _check_variant(variant)
    if variant == "shared" and (batch != 1 or k > SHARED_MAX_K):
        raise ValueError(f"variant 'shared' needs batch 1 and K <= {SHARED_MAX_K}, got batch {batch}, K={k}")
    return dict(x_dtype=x_dtype, w_dtype=w_dtype, batch=batch, k=k, m=m, eps=eps_value,
                variant=variant, out_shape=out_shape)


def _build_gemv(x: object, w: object, g: object, out: object, *, norm: bool, eps: object, variant: object,
                stream: object, separate: bool = False) -> tuple[Any, object]:
    """Validate, move to the device, build the op (``separate``: the two-launch RmsnormThenGemvOp).
    Returns (op, user-facing output object)."""
    p = _check_matmul(x, w, g, out, norm=norm, eps=eps, variant=variant)
    _cuda.require_cuda()
    xd = _cuda.as_device_array(x, "x", dtypes=[p["x_dtype"]], stream=stream)
    wd = _cuda.as_device_array(w, "w", dtypes=[p["w_dtype"]], stream=stream)
    gd = _cuda.as_device_array(g, "g", dtypes=[p["x_dtype"]], stream=stream) if norm else None
    if out is None:
        user_out, yd = _cuda.output_like(x, p["out_shape"], p["x_dtype"])
    else:
        user_out, yd = out, _cuda.as_device_array(out, "out", dtypes=[p["x_dtype"]])
    owners = (xd, wd, gd, yd, x, w, g, user_out)
    if separate:
        op = _core.RmsnormThenGemvOp(w=wd.address, w_dtype=p["w_dtype"], x=xd.address, x_dtype=p["x_dtype"],
                                     g=gd.address, y=yd.address, m=p["m"], k=p["k"], batch=p["batch"],
                                     eps=p["eps"], variant=p["variant"], owners=owners)
        return op, user_out
    op = _core.GemvOp(w=wd.address, w_dtype=p["w_dtype"], x=xd.address, x_dtype=p["x_dtype"],
                      g=gd.address if gd is not None else 0, y=yd.address, m=p["m"], k=p["k"], batch=p["batch"],
                      norm=norm, eps=p["eps"], variant=p["variant"], owners=owners)
    return op, user_out


def _build_rmsnorm(x: object, g: object, out: object, *, eps: object, stream: object) -> tuple[Any, object]:
    x_shape, x_dtype, batch, k = _check_activation(x)
    _check_norm_weight(g, k, x_dtype)
    eps_value = _check_eps(eps)
    if out is not None:
        _check_out(out, x_shape, x_dtype)
    _cuda.require_cuda()
    xd = _cuda.as_device_array(x, "x", dtypes=[x_dtype], stream=stream)
    gd = _cuda.as_device_array(g, "g", dtypes=[x_dtype], stream=stream)
    if out is None:
        user_out, od = _cuda.output_like(x, x_shape, x_dtype)
    else:
        user_out, od = out, _cuda.as_device_array(out, "out", dtypes=[x_dtype])
    op = _core.RmsnormOp(x=xd.address, dtype=x_dtype, g=gd.address, out=od.address, k=k, batch=batch, eps=eps_value,
                         owners=(xd, gd, od, x, g, user_out))
    return op, user_out


def _run(op: Any, user_out: object, reference: object, out_given: bool, stream: object) -> object:
    op.launch(_cuda.stream_handle(stream))
    if out_given:
        return user_out
    return _cuda.finish_output(user_out, reference, stream)


def gemv(x: object, w: object, *, out: object = None, stream: object = None, variant: str = "auto") -> object:
    """y = x @ w.T for w [M, K] and x [K] or [B, K]; returns y [M] or [B, M] in x's dtype (see the module doc)."""
    op, user_out = _build_gemv(x, w, None, out, norm=False, eps=0.0, variant=variant, stream=stream)
    return _run(op, user_out, x, out is not None, stream)


def fused_rmsnorm_matmul(x: object, g: object, w: object, *, eps: float = 1e-5, out: object = None,
                         stream: object = None, variant: str = "auto") -> object:
    """y = (rmsnorm(x) * g) @ w.T in one kernel launch; shapes and dtypes as in the module doc."""
    op, user_out = _build_gemv(x, w, g, out, norm=True, eps=eps, variant=variant, stream=stream)
    return _run(op, user_out, x, out is not None, stream)


def rmsnorm_gpu(x: object, g: object, *, eps: float = 1e-5, out: object = None, stream: object = None) -> object:
    """out = x / sqrt(mean(x**2, axis=-1) + eps) * g for x [K] or [B, K] (B <= 8), in x's dtype."""
    op, user_out = _build_rmsnorm(x, g, out, eps=eps, stream=stream)
    return _run(op, user_out, x, out is not None, stream)


def prepare_gemv(x: object, w: object, *, out: object = None, variant: str = "auto", stream: object = None) -> Any:
    """A prepared ``_core.GemvOp`` computing gemv(x, w) into ``out`` at each ``launch(stream)``.

    numpy inputs are copied to the device once, here (``stream`` orders those copies). Pass ``out`` (a device
    array) to read the result; without it the op writes to memory it owns."""
    op, _ = _build_gemv(x, w, None, out, norm=False, eps=0.0, variant=variant, stream=stream)
    return op


def prepare_fused_rmsnorm_matmul(x: object, g: object, w: object, *, eps: float = 1e-5, out: object = None,
                                 variant: str = "auto", stream: object = None) -> Any:
    """A prepared ``_core.GemvOp`` computing fused_rmsnorm_matmul(x, g, w) (see :func:`prepare_gemv`)."""
    op, _ = _build_gemv(x, w, g, out, norm=True, eps=eps, variant=variant, stream=stream)
    return op


def prepare_rmsnorm_then_gemv(x: object, g: object, w: object, *, eps: float = 1e-5, out: object = None,
                              variant: str = "auto", stream: object = None) -> Any:
    """The two-launch baseline of the fused op as one prepared ``_core.RmsnormThenGemvOp``: an RMSNorm kernel
    writes rmsnorm(x) * g (x's dtype) to a workspace the op owns, then the GEMV reads it
    (``kernels_per_launch == 2``). Same arguments as :func:`prepare_fused_rmsnorm_matmul`."""
    op, _ = _build_gemv(x, w, g, out, norm=True, eps=eps, variant=variant, stream=stream, separate=True)
    return op


def prepare_rmsnorm(x: object, g: object, *, eps: float = 1e-5, out: object = None, stream: object = None) -> Any:
    """A prepared ``_core.RmsnormOp`` computing rmsnorm_gpu(x, g) (see :func:`prepare_gemv`)."""
    op, _ = _build_rmsnorm(x, g, out, eps=eps, stream=stream)
    return op


def choose_variant(m: int, k: int, batch: int = 1, *, sm_count: Optional[int] = None) -> str:
    """The variant "auto" picks for an aligned problem (the crossover table); sm_count defaults to device 0's."""
    _cuda.require_cuda()
    if sm_count is None:
        sm_count = int(_cuda.device_info(0)["multiprocessor_count"])
    return str(_core.gemv_choose_variant(int(m), int(k), int(batch), int(sm_count)))
