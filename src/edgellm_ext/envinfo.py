"""The environment record stored with every benchmark result.

GPU facts come from NVML (``pynvml``, PyPI ``nvidia-ml-py``) with ``nvidia-smi`` as the fallback; CPU, memory,
OS and Python from the standard library and ``psutil``; plus the package's :func:`edgellm_ext.build_info`, the
project's git commit and dirty flag, and a UTC timestamp. Nothing here raises for a missing GPU, NVML, psutil or
git: the record says what is unavailable and why (``{"available": False, "reason": ...}``).

Both GPU sources are injectable (``nvml=``, ``smi_runner=``) so the parsing is tested without a GPU.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

__all__ = ["AUTO", "collect_environment", "cpu_info", "git_info", "gpu_info", "machine_slug", "utc_now_iso"]

AUTO: Any = "auto"  # sentinel: import the real module

_SMI_FIELDS = [
    "name", "uuid", "driver_version", "compute_cap", "memory.total", "power.limit", "clocks.sm", "clocks.max.sm",
    "clocks.mem", "clocks.max.mem", "persistence_mode", "pcie.link.gen.current", "pcie.link.width.current",
]


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_nvml(nvml: Any = AUTO) -> tuple[Optional[Any], Optional[str]]:
    """(initialised NVML module, None) or (None, reason). The caller must call ``nvmlShutdown`` when done."""
    if nvml is None:
        return None, "NVML disabled by the caller"
    if nvml is AUTO:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, "pynvml not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML init failed: {_short(e)}"
    return nvml, None


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_device(nvml: Any, index: int) -> dict[str, Any]:
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    unsupported: list[str] = []

    def get(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # NVMLError_NotSupported and friends: record, never raise
            unsupported.append(f"{key} ({_short(e)})")
            return None

    sm = getattr(nvml, "NVML_CLOCK_SM", 1)
    mem = getattr(nvml, "NVML_CLOCK_MEM", 2)
    cc = get("compute_capability", lambda: nvml.nvmlDeviceGetCudaComputeCapability(h))
    meminfo = get("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(h))
    limit_mw = get("power_limit", lambda: nvml.nvmlDeviceGetPowerManagementLimit(h))
    persistence = get("persistence_mode", lambda: nvml.nvmlDeviceGetPersistenceMode(h))
    return {
        "index": index,
        "name": _text(get("name", lambda: nvml.nvmlDeviceGetName(h))),
        "uuid": _text(get("uuid", lambda: nvml.nvmlDeviceGetUUID(h))),
        "compute_capability": None if cc is None else f"{cc[0]}.{cc[1]}",
        "memory_total_bytes": None if meminfo is None else int(meminfo.total),
        "memory_used_bytes": None if meminfo is None else int(meminfo.used),
        "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
        "sm_clock_mhz": get("sm_clock", lambda: nvml.nvmlDeviceGetClockInfo(h, sm)),
        "sm_clock_max_mhz": get("sm_clock_max", lambda: nvml.nvmlDeviceGetMaxClockInfo(h, sm)),
        "mem_clock_mhz": get("mem_clock", lambda: nvml.nvmlDeviceGetClockInfo(h, mem)),
        "mem_clock_max_mhz": get("mem_clock_max", lambda: nvml.nvmlDeviceGetMaxClockInfo(h, mem)),
        "persistence_mode": None if persistence is None else bool(persistence),
        "pcie_gen": get("pcie_gen", lambda: nvml.nvmlDeviceGetCurrPcieLinkGeneration(h)),
        "pcie_width": get("pcie_width", lambda: nvml.nvmlDeviceGetCurrPcieLinkWidth(h)),
        "unsupported": unsupported,
    }


def _gpu_from_nvml(nvml: Any) -> dict[str, Any]:
    def opt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:
            return None

    cuda_int = opt(nvml.nvmlSystemGetCudaDriverVersion)
    count = int(nvml.nvmlDeviceGetCount())
    return {
        "available": count > 0,
        "source": "nvml",
        "reason": None if count > 0 else "NVML reports no GPU",
        "driver_version": _text(opt(nvml.nvmlSystemGetDriverVersion)),
        "cuda_driver_version": None if cuda_int is None else f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}",
        "devices": [_nvml_device(nvml, i) for i in range(count)],
    }


def _run_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise FileNotFoundError("nvidia-smi not found on PATH")
    out = subprocess.run([exe, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"nvidia-smi exited {out.returncode}: {(out.stderr or out.stdout).strip()[:200]}")
    return out.stdout


def _gpu_from_smi(text: str) -> dict[str, Any]:
    def num(v: str, kind: Callable[[str], Any]) -> Any:
        v = v.strip()
        try:
            return kind(v)
        except ValueError:
            return None  # "[N/A]", "[Not Supported]"

    devices = []
    driver = None
    for index, line in enumerate(row for row in text.splitlines() if row.strip()):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(_SMI_FIELDS):
            raise ValueError(f"nvidia-smi line has {len(parts)} fields, expected {len(_SMI_FIELDS)}: {line!r}")
        f = dict(zip(_SMI_FIELDS, parts))
        driver = f["driver_version"]
        mem_mib = num(f["memory.total"], float)
        devices.append({
            "index": index,
            "name": f["name"],
            "uuid": f["uuid"],
            "compute_capability": f["compute_cap"] if re.fullmatch(r"\d+\.\d+", f["compute_cap"]) else None,
            "memory_total_bytes": None if mem_mib is None else int(mem_mib * 1024 * 1024),
            "memory_used_bytes": None,
            "power_limit_w": num(f["power.limit"], float),
            "sm_clock_mhz": num(f["clocks.sm"], int),
            "sm_clock_max_mhz": num(f["clocks.max.sm"], int),
            "mem_clock_mhz": num(f["clocks.mem"], int),
            "mem_clock_max_mhz": num(f["clocks.max.mem"], int),
            "persistence_mode": {"Enabled": True, "Disabled": False}.get(f["persistence_mode"]),
            "pcie_gen": num(f["pcie.link.gen.current"], int),
            "pcie_width": num(f["pcie.link.width.current"], int),
            "unsupported": [],
        })
    return {"available": bool(devices), "source": "nvidia-smi",
            "reason": None if devices else "nvidia-smi lists no GPU",
            "driver_version": driver, "cuda_driver_version": None, "devices": devices}


def gpu_info(nvml: Any = AUTO, smi_runner: Optional[Callable[[], str]] = _run_smi) -> dict[str, Any]:
    """GPU record: NVML first, nvidia-smi second; ``{"available": False, "reason": ...}`` when neither works."""
    module, nvml_reason = load_nvml(nvml)
    if module is not None:
        try:
            return _gpu_from_nvml(module)
        except Exception as e:
            nvml_reason = f"NVML query failed: {_short(e)}"
        finally:
            try:
                module.nvmlShutdown()
            except Exception:
                pass
    smi_reason = "nvidia-smi fallback disabled"
    if smi_runner is not None:
        try:
            record = _gpu_from_smi(smi_runner())
            record["nvml_reason"] = nvml_reason
            return record
        except Exception as e:
            smi_reason = _short(e)
    return {"available": False, "source": None, "reason": f"no GPU found: {nvml_reason}; {smi_reason}",
            "driver_version": None, "cuda_driver_version": None, "devices": []}


def _psutil(psutil_module: Any = AUTO) -> tuple[Optional[Any], Optional[str]]:
    if psutil_module is None:
        return None, "psutil disabled by the caller"
    if psutil_module is AUTO:
        try:
            return importlib.import_module("psutil"), None
        except ImportError:
            return None, "psutil not installed (pip install psutil)"
    return psutil_module, None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_info(psutil_module: Any = AUTO) -> dict[str, Any]:
    """CPU model, cores, threads, RAM and the SIMD flags that matter here (Linux /proc/cpuinfo)."""
    ps, reason = _psutil(psutil_module)
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(have & {"avx", "avx2", "fma", "f16c", "avx512f", "neon", "asimd", "asimdhp"})
                    break
    except OSError:
        pass
    record: dict[str, Any] = {
        "model": _cpu_model(),
        "machine": platform.machine(),
        "threads": os.cpu_count(),
        "cores": None,
        "ram_total_bytes": None,
        "simd_flags": flags,
        "psutil_reason": reason,
    }
    if ps is not None:
        try:
            record["cores"] = ps.cpu_count(logical=False)
            record["ram_total_bytes"] = int(ps.virtual_memory().total)
            freq = ps.cpu_freq()
            record["freq_max_mhz"] = None if freq is None else float(freq.max) or None
        except Exception as e:
            record["psutil_reason"] = f"psutil query failed: {_short(e)}"
    return record


def git_info(repo_dir: Union[str, Path, None]) -> dict[str, Any]:
    """``{"commit", "dirty", "reason"}`` for the repository at ``repo_dir`` (None values with a reason if no git).

    A copy of a checkout without ``.git`` (e.g. the tree sent to a lent GPU machine) records the commit named by
    the ``EDGELLM_GIT_COMMIT`` environment variable, and says so."""
    found = _git_info(repo_dir)
    given = os.environ.get("EDGELLM_GIT_COMMIT")
    if given and (found["commit"] is None or found["dirty"]):
        # A copied tree (e.g. the GPU machine's) may carry stale git metadata: the caller's commit wins, and what
        # git said here is kept beside it.
        return {"commit": given, "dirty": None,
                "reason": f"from EDGELLM_GIT_COMMIT (git here: {found['commit'] or found['reason']}"
                          f"{', dirty' if found['dirty'] else ''})"}
    return found


def _git_info(repo_dir: Union[str, Path, None]) -> dict[str, Any]:
    if repo_dir is None:
        return {"commit": None, "dirty": None, "reason": "no repository directory given"}
    git = shutil.which("git")
    if git is None:
        return {"commit": None, "dirty": None, "reason": "git not found on PATH"}
    try:
        head = subprocess.run([git, "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return {"commit": None, "dirty": None, "reason": f"not a git repository: {head.stderr.strip()[:200]}"}
        status = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                                capture_output=True, text=True, timeout=20)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()), "reason": None}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "reason": _short(e)}


def _versions(names: list[str]) -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _numpy_blas() -> Optional[str]:
    try:
        import numpy as np

        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}".strip() or None
    except Exception:
        return None


def _build_info() -> dict[str, Any]:
    try:
        from . import build_info

        return dict(build_info())
    except Exception as e:
        return {"error": _short(e)}


def _cuda_devices() -> dict[str, Any]:
    """What the compiled CUDA runtime sees (SM count, L2 size, runtime/driver versions), when CUDA is built in."""
    try:
        from . import _core

        if not _core.cuda_compiled():
            return {"available": False, "reason": "edgellm_ext built without CUDA", "devices": []}
        count = int(_core.cuda_device_count())
        if count == 0:
            return {"available": False, "reason": "CUDA compiled in, but no CUDA device visible", "devices": []}
        return {"available": True, "reason": None, "devices": [dict(_core.cuda_device_info(i)) for i in range(count)]}
    except Exception as e:
        return {"available": False, "reason": _short(e), "devices": []}


def collect_environment(
    repo_dir: Union[str, Path, None] = None,
    *,
    nvml: Any = AUTO,
    smi_runner: Optional[Callable[[], str]] = _run_smi,
    psutil_module: Any = AUTO,
) -> dict[str, Any]:
    """The full environment record (see module docstring). Never raises for missing hardware or tools."""
    return {
        "timestamp_utc": utc_now_iso(),
        "hostname": platform.node(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "cpu": cpu_info(psutil_module),
        "gpu": gpu_info(nvml, smi_runner),
        "edgellm_ext": _build_info(),
        "cuda_runtime": _cuda_devices(),
        "git": git_info(repo_dir),
        "numpy_blas": _numpy_blas(),
        "packages": _versions(["numpy", "torch", "nvidia-ml-py", "psutil", "matplotlib", "requests", "gguf"]),
    }


def machine_slug(env: dict[str, Any]) -> str:
    """Folder name for results: the first GPU's name, else the CPU model, lower-case with dashes."""
    gpu = env.get("gpu") or {}
    devices = gpu.get("devices") or []
    name = devices[0].get("name") if gpu.get("available") and devices else None
    if not name:
        name = (env.get("cpu") or {}).get("model") or "unknown"
        name = "cpu-" + str(name)
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower().replace("(r)", "").replace("(tm)", "")).strip("-")
    return slug[:60] or "unknown"
