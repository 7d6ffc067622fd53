"""Power and resource sampling around a timed section.

>>> with PowerSampler(interval_s=0.02) as sampler:
...     run_the_benchmark()
>>> sampler.result()   # {"gpu": {...}, "host": {...}}

A background thread reads NVML every ``interval_s``: board power (W), SM clock and GPU memory used. Energy comes
from NVML's total-energy counter when the GPU has one (difference end - start), else from integrating the power
samples (trapezoids); ``energy_method`` says which. The section is flagged ``throttled`` when the SM clock fell
below ``throttle_fraction`` (0.75) of the device's maximum SM clock at any sample. Host CPU utilisation over the
section comes from ``psutil.cpu_percent``.

Without NVML (no GPU, no driver, no pynvml) the GPU part is ``{"available": False, "reason": ...}``; without
psutil the host part says so. The sampler never raises for missing hardware. NVML and psutil are injectable
(``nvml=``, ``psutil_module=``) so tests run with fakes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from .envinfo import AUTO, _psutil, _short, load_nvml

__all__ = ["PowerSampler", "energy_per_token_j"]


class PowerSampler:
    """Context manager sampling GPU power/clock/memory (NVML) and host CPU utilisation during a section."""

    def __init__(
        self,
        *,
        nvml: Any = AUTO,
        psutil_module: Any = AUTO,
        device_index: int = 0,
        interval_s: float = 0.02,
        throttle_fraction: float = 0.75,
    ) -> None:
        if not (interval_s > 0):
            raise ValueError(f"interval_s: expected > 0, got {interval_s}")
        if not (0 < throttle_fraction <= 1):
            raise ValueError(f"throttle_fraction: expected a value in (0, 1], got {throttle_fraction}")
        self._nvml_arg = nvml
        self._psutil_arg = psutil_module
        self._device_index = device_index
        self._interval_s = interval_s
        self._throttle_fraction = throttle_fraction
        self._nvml: Optional[Any] = None
        self._handle: Any = None
        self._gpu_reason: Optional[str] = None
        self._psutil: Optional[Any] = None
        self._host_reason: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._power_w: list[float] = []
        self._sm_mhz: list[int] = []
        self._mem_used: list[int] = []
        self._sample_errors: list[str] = []
        self._sm_max_mhz: Optional[int] = None
        self._energy_start_mj: Optional[float] = None
        self._energy_end_mj: Optional[float] = None
        self._t0 = self._t1 = 0.0
        self._cpu_percent: Optional[float] = None
        self._entered = False

    # ------------------------------------------------------------------------------------------------ NVML
    def _sample(self) -> None:
        nv, h = self._nvml, self._handle
        t = time.perf_counter()
        try:
            p = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        except Exception as e:
            self._note_error("power", e)
            p = None
        try:
            sm = int(nv.nvmlDeviceGetClockInfo(h, getattr(nv, "NVML_CLOCK_SM", 1)))
        except Exception as e:
            self._note_error("sm_clock", e)
            sm = None
        try:
            mem = int(nv.nvmlDeviceGetMemoryInfo(h).used)
        except Exception as e:
            self._note_error("memory", e)
            mem = None
        with self._lock:
            if p is not None:
                self._t.append(t)
                self._power_w.append(p)
            if sm is not None:
                self._sm_mhz.append(sm)
            if mem is not None:
                self._mem_used.append(mem)

    def _note_error(self, what: str, e: BaseException) -> None:
        msg = f"{what}: {_short(e)}"
        with self._lock:
            if msg not in self._sample_errors:
                self._sample_errors.append(msg)

    def _energy_mj(self) -> Optional[float]:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    # -------------------------------------------------------------------------------------- context manager
    def __enter__(self) -> "PowerSampler":
        if self._entered:
            raise RuntimeError("PowerSampler is single-use: create a new one for each section")
        self._entered = True
        self._nvml, self._gpu_reason = load_nvml(self._nvml_arg)
        if self._nvml is not None:
            try:
                count = int(self._nvml.nvmlDeviceGetCount())
                if self._device_index >= count:
                    raise ValueError(f"device index {self._device_index} but NVML sees {count} GPU(s)")
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self._device_index)
                try:
                    self._sm_max_mhz = int(self._nvml.nvmlDeviceGetMaxClockInfo(
                        self._handle, getattr(self._nvml, "NVML_CLOCK_SM", 1)))
                except Exception as e:
                    self._note_error("sm_clock_max", e)
            except Exception as e:
                self._gpu_reason = f"NVML device query failed: {_short(e)}"
                self._shutdown_nvml()
        self._psutil, self._host_reason = _psutil(self._psutil_arg)
        if self._psutil is not None:
            try:
                self._psutil.cpu_percent(interval=None)  # primes the counter; the next call covers the section
            except Exception as e:
                self._host_reason = f"psutil.cpu_percent failed: {_short(e)}"
                self._psutil = None
        self._t0 = time.perf_counter()
        if self._nvml is not None:
            self._energy_start_mj = self._energy_mj()
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="edgellm-power-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._nvml is not None:
            self._sample()
            self._energy_end_mj = self._energy_mj()
        self._t1 = time.perf_counter()
        if self._psutil is not None:
            try:
                self._cpu_percent = float(self._psutil.cpu_percent(interval=None))
            except Exception as e:
                self._host_reason = f"psutil.cpu_percent failed: {_short(e)}"
        self._shutdown_nvml()

    def _shutdown_nvml(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._nvml = None

    # --------------------------------------------------------------------------------------------- result
    def result(self) -> dict[str, Any]:
        """Summary of the section (call after the ``with`` block)."""
        duration = max(0.0, self._t1 - self._t0)
        host: dict[str, Any]
        if self._cpu_percent is not None:
            host = {"available": True, "cpu_percent": self._cpu_percent, "reason": None}
        else:
            host = {"available": False, "cpu_percent": None, "reason": self._host_reason or "not sampled"}
        with self._lock:
            power, t, sm, mem = list(self._power_w), list(self._t), list(self._sm_mhz), list(self._mem_used)
            errors = list(self._sample_errors)
        if self._gpu_reason is not None or (not power and not sm and not mem):
            reason = self._gpu_reason or ("no NVML sample succeeded: " + "; ".join(errors))
            return {"duration_s": duration, "gpu": {"available": False, "reason": reason}, "host": host}
        gpu: dict[str, Any] = {"available": True, "reason": None, "device_index": self._device_index,
                               "samples": len(power), "sample_errors": errors}
        if power:
            gpu["avg_power_w"] = sum(power) / len(power)
            gpu["peak_power_w"] = max(power)
        else:
            gpu["avg_power_w"] = gpu["peak_power_w"] = None
        if self._energy_start_mj is not None and self._energy_end_mj is not None:
            gpu["energy_j"] = (self._energy_end_mj - self._energy_start_mj) / 1000.0
            gpu["energy_method"] = "nvml total-energy counter"
        elif len(power) >= 2:
            gpu["energy_j"] = sum((t[i + 1] - t[i]) * (power[i + 1] + power[i]) / 2.0 for i in range(len(power) - 1))
            gpu["energy_method"] = "integrated power samples (trapezoids)"
        else:
            gpu["energy_j"] = None
            gpu["energy_method"] = "unavailable: fewer than 2 power samples and no energy counter"
        gpu["gpu_memory_used_peak_bytes"] = max(mem) if mem else None
        gpu["sm_clock_min_mhz"] = min(sm) if sm else None
        gpu["sm_clock_max_mhz"] = self._sm_max_mhz
        if sm and self._sm_max_mhz:
            gpu["throttled"] = bool(min(sm) < self._throttle_fraction * self._sm_max_mhz)
        else:
            gpu["throttled"] = None
        gpu["throttle_rule"] = f"sm clock < {self._throttle_fraction:g} x max sm clock"
        return {"duration_s": duration, "gpu": gpu, "host": host}


def energy_per_token_j(power_record: dict[str, Any], tokens: int) -> Optional[float]:
    """Energy of the section divided by the tokens it produced, or None when energy or tokens are unknown."""
    gpu = (power_record or {}).get("gpu") or {}
    energy = gpu.get("energy_j")
    if energy is None or not tokens or tokens <= 0:
        return None
    return float(energy) / tokens
