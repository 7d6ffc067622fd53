"""CUDA device arrays, streams and timers.

Device data: the GPU kernels accept, zero-copy, torch CUDA tensors (read through ``data_ptr()``, so bfloat16
works too) and any object with ``__cuda_array_interface__`` (cupy arrays, numba); C-contiguous only. A numpy
host array is accepted for convenience: it is copied to the device (and an output copied back), which is never
timed. Kernels run on the current CUDA device (device 0 unless the caller set another).

Streams: ``stream=None`` means the legacy default stream (handle 0), which orders with torch's and cupy's default
streams; pass an integer handle, a ``torch.cuda.Stream`` (``.cuda_stream``), a ``cupy.cuda.Stream`` (``.ptr``) or
an :class:`edgellm_ext.cuda.Stream` to use another.

Timing (the methodology of every GPU benchmark here): :class:`Timer` launches a prepared operation
(a ``_core.Launchable``) ``warmup`` times, then ``iterations`` times each between two CUDA events recorded from
C++ (no Python between the events), flushing the L2 cache (a write of 4x its size) before each timed launch,
outside the events. :meth:`Timer.graph` captures N launches into one CUDA graph and reports replay time / N.
:meth:`Timer.callable` times a Python callable (a peer such as torch SDPA) the same way, with Python between
the events, as any user of that peer pays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import _core

__all__ = [
    "DeviceArray",
    "Stream",
    "Timer",
    "as_device_array",
    "describe",
    "device_info",
    "empty",
    "from_host",
    "require_cuda",
    "stream_handle",
    "to_host",
]

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "int32": 4, "uint8": 1, "int8": 1, "uint16": 2}
_TYPESTR = {"<f2": "float16", "<f4": "float32", "<i4": "int32", "|u1": "uint8", "|i1": "int8", "<u2": "uint16"}

Stream = _core.Stream


def require_cuda() -> None:
    """Raise RuntimeError with the reason when the CUDA kernels cannot run here."""
    if not _core.cuda_compiled():
        raise RuntimeError("edgellm_ext was built without CUDA (build_info()['cuda_compiled'] is False)")
    if _core.cuda_device_count() == 0:
        raise RuntimeError("no CUDA device is visible (cuda_available() is False)")


def device_info(ordinal: int = 0) -> dict[str, Any]:
    """Name, compute capability, SM count, L2 and memory sizes, runtime and driver versions of a device."""
    require_cuda()
    return dict(_core.cuda_device_info(ordinal))


def stream_handle(stream: object) -> int:
    """The integer CUDA stream handle of ``stream`` (None: 0, the legacy default stream)."""
    if stream is None:
        return 0
    if isinstance(stream, bool):
        raise TypeError("stream: expected None, an int handle or a stream object, got bool")
    if isinstance(stream, int):
        return stream
    for attr in ("handle", "cuda_stream", "ptr"):  # edgellm_ext.cuda.Stream, torch.cuda.Stream, cupy.cuda.Stream
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value
    raise TypeError(f"stream: expected None, an int handle or a torch/cupy/edgellm_ext stream, got {type(stream).__name__}")


@dataclass(frozen=True)
class DeviceArray:
    """A C-contiguous array in device memory: address, shape and dtype name, plus the object that owns the memory.

    ``host`` is the numpy array it was copied from (None for zero-copy device inputs)."""

    address: int
    shape: tuple[int, ...]
    dtype: str
    owner: object = field(repr=False)
    host: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * ITEMSIZE[self.dtype]


def _contiguous_strides(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def _describe(value: object, name: str) -> tuple[int, tuple[int, ...], str, bool]:
    """(address, shape, dtype name, is C-contiguous) of a device array-like, or raise TypeError."""
    if hasattr(value, "data_ptr") and hasattr(value, "is_cuda"):  # torch.Tensor, without importing torch
        if not value.is_cuda:  # type: ignore[attr-defined]
            raise ValueError(f"{name}: the torch tensor is on the CPU; move it to the GPU or pass a numpy array")
        dtype = str(value.dtype).replace("torch.", "")  # type: ignore[attr-defined]
        return (int(value.data_ptr()), tuple(int(d) for d in value.shape), dtype,  # type: ignore[attr-defined]
                bool(value.is_contiguous()))  # type: ignore[attr-defined]
    cai = getattr(value, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(int(d) for d in cai["shape"])
        typestr = cai["typestr"]
        if typestr not in _TYPESTR:
            raise TypeError(f"{name}: unsupported __cuda_array_interface__ typestr {typestr!r}")
        dtype = _TYPESTR[typestr]
        strides = cai.get("strides")
        contiguous = strides is None or tuple(strides) == _contiguous_strides(shape, ITEMSIZE[dtype])
        return int(cai["data"][0]), shape, dtype, contiguous
    raise TypeError(
        f"{name}: expected a torch CUDA tensor, an object with __cuda_array_interface__ (cupy) or a numpy array, "
        f"got {type(value).__name__}"
    )


def from_host(array: np.ndarray, stream: object = None) -> DeviceArray:
    """Copy a C-contiguous numpy array to new device memory (owned by the returned DeviceArray)."""
    array = np.ascontiguousarray(array)
    dtype = str(array.dtype)
    if dtype not in ITEMSIZE:
        raise TypeError(f"array: unsupported dtype {dtype}")
    require_cuda()
    buf = _core.DeviceBuffer(array.nbytes)
    buf.copy_from_host(array, 0, stream_handle(stream))
    return DeviceArray(buf.address, tuple(array.shape), dtype, buf, host=array)


def empty(shape: Sequence[int], dtype: str) -> DeviceArray:
    """New uninitialised device memory owned by the returned DeviceArray."""
    if dtype not in ITEMSIZE:
        raise TypeError(f"dtype: expected one of {sorted(ITEMSIZE)}, got {dtype!r}")
    require_cuda()
    shape = tuple(int(d) for d in shape)
    buf = _core.DeviceBuffer(int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[dtype])
    return DeviceArray(buf.address, shape, dtype, buf)


def to_host(array: DeviceArray, stream: object = None) -> np.ndarray:
    """Copy a DeviceArray to a new numpy array (bfloat16 comes back as float32, exactly)."""
    if array.dtype == "bfloat16":
        bits = np.empty(array.shape, dtype=np.uint16)
        _copy_to_host(array, bits, stream)
        return (bits.astype(np.uint32) << 16).view(np.float32)
    out = np.empty(array.shape, dtype=np.dtype(array.dtype))
    _copy_to_host(array, out, stream)
    return out


def _copy_to_host(array: DeviceArray, out: np.ndarray, stream: object) -> None:
    owner = array.owner
    if isinstance(owner, _core.DeviceBuffer) and owner.address == array.address:
        owner.copy_to_host(out, 0, stream_handle(stream))
        return
    raise TypeError("to_host: only arrays allocated by edgellm_ext can be copied here; use torch/cupy for theirs")


def describe(value: object, name: str) -> tuple[tuple[int, ...], str]:
    """(shape, dtype name) of a device array-like or numpy array, without copying anything; raises TypeError
    for anything else."""
    if isinstance(value, DeviceArray):
        return value.shape, value.dtype
    if isinstance(value, np.ndarray):
        return tuple(value.shape), str(value.dtype)
    _, shape, dtype, _ = _describe(value, name)
    return shape, dtype


def as_device_array(
    value: object,
    name: str,
    *,
    dtypes: Sequence[str],
    shape: Optional[Sequence[Optional[int]]] = None,
    ndim: Optional[int] = None,
    stream: object = None,
) -> DeviceArray:
    """Validate ``value`` as a device array (or copy a numpy array to the device) and describe it.

    Every check happens before any copy. Raises TypeError for a wrong type/dtype and ValueError for a wrong shape
    or a non-contiguous array; every message names the argument, the expected and the actual value."""
    if isinstance(value, DeviceArray):
        address, shp, dtype, contiguous = value.address, value.shape, value.dtype, True
    elif isinstance(value, np.ndarray):
        address, shp, dtype, contiguous = 0, tuple(value.shape), str(value.dtype), bool(value.flags.c_contiguous)
    else:
        address, shp, dtype, contiguous = _describe(value, name)
    if dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {' or '.join(dtypes)}, got {dtype}")
    if ndim is not None and len(shp) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {shp}")
    if shape is not None and (len(shape) != len(shp) or any(s is not None and s != d for s, d in zip(shape, shp))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {shp}")
    if not contiguous:
        raise ValueError(f"{name}: must be C-contiguous (numpy.ascontiguousarray / .contiguous() / cupy.ascontiguousarray)")
    if isinstance(value, DeviceArray):
        return value
    if isinstance(value, np.ndarray):
        return from_host(value, stream)
    return DeviceArray(int(address), tuple(shp), dtype, value)


def output_like(reference: object, shape: Sequence[int], dtype: str) -> tuple[object, DeviceArray]:
    """A new output of ``shape``/``dtype`` of the same kind as ``reference`` (torch tensor, cupy array, or device
    memory for numpy/DeviceArray inputs, which :func:`finish_output` copies back). Returns (user object, view)."""
    shape = tuple(int(d) for d in shape)
    if hasattr(reference, "data_ptr") and hasattr(reference, "new_empty"):  # torch
        import torch

        tensor = reference.new_empty(shape, dtype=getattr(torch, dtype))  # type: ignore[attr-defined]
        return tensor, as_device_array(tensor, "out", dtypes=[dtype])
    if hasattr(reference, "__cuda_array_interface__") and type(reference).__module__.startswith("cupy"):
        import cupy

        arr = cupy.empty(shape, dtype=dtype)
        return arr, as_device_array(arr, "out", dtypes=[dtype])
    dev = empty(shape, dtype)
    return dev, dev


def finish_output(user_out: object, reference: object, stream: object) -> object:
    """What a kernel wrapper returns: numpy inputs get a numpy result (copied back), others the device object."""
    if isinstance(reference, np.ndarray) and isinstance(user_out, DeviceArray):
        return to_host(user_out, stream)
    return user_out


@dataclass
class Timer:
    """Times prepared operations with CUDA events (see the module docstring). Owns its L2 flush buffer and a
    stream for graph capture; call :meth:`close` (or use ``with``) to free them."""

    flush_l2: bool = True
    _flusher: Any = field(default=None, init=False, repr=False)
    _stream: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        require_cuda()
        self._flusher = _core.L2Flusher() if self.flush_l2 else None
        self._stream = _core.Stream()

    def __enter__(self) -> "Timer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._flusher = None
        self._stream = None

    @property
    def stream(self) -> Any:
        """The timer's own stream (graph capture needs a non-default stream)."""
        return self._stream

    def events(self, op: Any, *, warmup: int, iterations: int) -> np.ndarray:
        """Per-launch times in microseconds (cold L2 when flush_l2), one per iteration."""
        return np.asarray(_core.time_events(op, self._stream.handle, warmup, iterations, self._flusher), dtype=np.float64)

    def graph(self, op: Any, *, launches_per_graph: int, warmup: int, replays: int) -> np.ndarray:
        """Per-launch times in microseconds from graph replays (launch overhead removed; warm L2)."""
        return np.asarray(_core.time_graph(op, self._stream.handle, launches_per_graph, warmup, replays), dtype=np.float64)

    def callable(self, fn: Callable[[], object], *, warmup: int, iterations: int, stream: object = None) -> np.ndarray:
        """Times ``fn()`` (which must enqueue its work on ``stream``, default the legacy default stream) with events
        recorded around the Python call, L2 flushed before each; microseconds per call."""
        handle = stream_handle(stream)
        for _ in range(warmup):
            fn()
        _core.stream_synchronize(handle)
        pair = _core.EventPair()
        times = np.empty(iterations, dtype=np.float64)
        for i in range(iterations):
            if self._flusher is not None:
                self._flusher.flush(handle)  # asynchronous, as in events(): the same conditions for both
            pair.record_start(handle)
            fn()
            pair.record_stop(handle)
            times[i] = pair.elapsed_us()
        return times
