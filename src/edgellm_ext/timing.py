"""Host-clock timing for CPU benchmarks.

GPU work is timed with CUDA events (edgellm_ext.cuda); this module is for code that runs on the host, timed with
``time.perf_counter_ns`` (monotonic, ns resolution). A call that takes well under a microsecond cannot be timed one
call at a time (the clock read itself costs tens of ns and a Python call ~0.1-1 us), so :func:`time_host` can time
``inner`` back-to-back calls per sample and report the per-call mean of that batch; :func:`calibrate_inner` picks
``inner`` so one sample lasts at least ``min_sample_us``. Results are labelled "host" and include the Python call
overhead of ``fn``: :func:`call_overhead_us` measures that floor so a report can show it beside the kernel times.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

__all__ = ["calibrate_inner", "call_overhead_us", "time_host"]


def _check_counts(warmup: int, iters: int, inner: int) -> None:
    for name, value, low in (("warmup", warmup, 0), ("iters", iters, 1), ("inner", inner, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def time_host(fn: Callable[[], object], warmup: int, iters: int, *, inner: int = 1) -> np.ndarray:
    """Run ``fn()`` ``warmup`` times untimed, then take ``iters`` samples.

    Each sample times ``inner`` consecutive calls with ``time.perf_counter_ns`` and records the mean per call.
    Returns float64 microseconds per call, shape [iters].
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    _check_counts(warmup, iters, inner)
    for _ in range(warmup):
        fn()
    samples_ns = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    if inner == 1:
        for i in range(iters):
            t0 = clock()
            fn()
            samples_ns[i] = clock() - t0
    else:
        rng = range(inner)
        for i in range(iters):
            t0 = clock()
            for _ in rng:
                fn()
            samples_ns[i] = clock() - t0
    return samples_ns.astype(np.float64) / (1000.0 * inner)


def calibrate_inner(fn: Callable[[], object], *, min_sample_us: float = 50.0, max_inner: int = 100_000) -> int:
    """Smallest power-of-two-ish ``inner`` such that ``inner`` calls of ``fn`` take >= ``min_sample_us``.

    Uses the fastest of 5 single-call timings (after 3 warm-up calls) as the per-call estimate.
    """
    if not (min_sample_us > 0):
        raise ValueError(f"min_sample_us: expected > 0, got {min_sample_us}")
    one_call_us = float(np.min(time_host(fn, 3, 5)))
    if one_call_us >= min_sample_us:
        return 1
    inner = math.ceil(min_sample_us / max(one_call_us, 0.01))
    return int(min(max_inner, max(1, inner)))


def call_overhead_us(warmup: int = 100, iters: int = 200, inner: int = 1000) -> np.ndarray:
    """Per-call time of an empty Python function under the same loop as :func:`time_host`: the timing floor."""
    def empty() -> None:
        return None

    return time_host(empty, warmup, iters, inner=inner)
