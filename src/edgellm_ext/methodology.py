"""Benchmark methodology as data: versioned, frozen files ``bench/methodology/v<version>.json``.

A version is frozen once released: :data:`FROZEN_SHA256` holds the SHA-256 of each released file's canonical
JSON (keys sorted, no whitespace), and :func:`load_methodology` refuses a file whose content no longer matches
(an edit) as well as an unknown version. Changing the methodology means adding ``v1.1.json`` and its hash here,
never editing ``v1.0.json``. This module only reads; it never writes a methodology file.

``quick=True`` (``bench/run.py --quick``) overlays the file's ``quick`` block (few iterations, short generations):
a smoke run, recorded as such in the results and never comparable with a full run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Union

__all__ = ["FROZEN_SHA256", "Methodology", "available_versions", "canonical_sha256", "load_methodology"]

# Released versions -> SHA-256 of the canonical JSON of the file. Add a line per new version; never change one.
FROZEN_SHA256: dict[str, str] = {
    "1.0": "e9ac04a3a476d50a536eb51c1c37a9c593fe4c5093627c9b3080ca0963dc8aa5",
}

_VERSION_RE = re.compile(r"^v(\d+\.\d+)\.json$")


def canonical_sha256(data: Any) -> str:
    """SHA-256 of ``json.dumps(data, sort_keys=True, separators=(",", ":"))``: insensitive to formatting."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def available_versions(directory: Union[str, Path]) -> list[str]:
    """Versions with a file ``v<version>.json`` in ``directory``, sorted."""
    d = Path(directory)
    found = [m.group(1) for f in d.glob("v*.json") if (m := _VERSION_RE.match(f.name))]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


@dataclasses.dataclass(frozen=True)
class Methodology:
    """The effective settings of one run (the version's values, with the quick overlay when ``quick``)."""

    version: str
    sha256: str
    quick: bool
    warmup_iterations: int
    iterations: int
    l2_flush: bool
    gpu_timer: str
    host_timer: str
    statistics: tuple[str, ...]
    outlier_k: float
    median_ci_confidence: float
    alpha: float
    regression_threshold: float
    reproducibility_tolerance: float
    throttle_sm_clock_fraction: float
    power_sample_interval_s: float
    cache_lengths: tuple[int, ...]
    scaling_lengths: tuple[int, ...]
    prompts: tuple[str, ...]
    temperature: float
    seed: int
    num_predict: int
    e2e_warmup_runs: int
    e2e_runs: int
    request_timeout_s: float
    data: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """What a results file stores: version, hash, quick flag and the effective settings."""
        out = dataclasses.asdict(self)
        out.pop("data")
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_methodology(version: str, directory: Union[str, Path], *, quick: bool = False) -> Methodology:
    """Load ``<directory>/v<version>.json``.

    Raises ValueError (listing the known versions) for an unknown version, and ValueError when the file's content
    differs from the frozen hash (the file was edited: make a new version instead).
    """
    d = Path(directory)
    if version not in FROZEN_SHA256:
        raise ValueError(f"unknown methodology version {version!r}; released versions: "
                         f"{', '.join(sorted(FROZEN_SHA256))} "
                         f"(files in {d}: {', '.join(available_versions(d)) or 'none'})")
    path = d / f"v{version}.json"
    if not path.is_file():
        raise ValueError(f"methodology version {version} is released but its file {path} is missing")
    raw = json.loads(path.read_text(encoding="utf-8"))
    digest = canonical_sha256(raw)
    if digest != FROZEN_SHA256[version]:
        raise ValueError(f"{path} does not match frozen methodology v{version} (sha256 {digest[:12]}... != "
                         f"{FROZEN_SHA256[version][:12]}...): a released methodology is never edited; "
                         f"restore it and add a new version instead")
    if raw.get("version") != version:
        raise ValueError(f"{path}: its 'version' field is {raw.get('version')!r}, expected {version!r}")
    eff = _overlay(raw, raw.get("quick", {})) if quick else raw
    e2e = eff["end_to_end"]
    return Methodology(
        version=version,
        sha256=digest,
        quick=quick,
        warmup_iterations=int(eff["warmup_iterations"]),
        iterations=int(eff["iterations"]),
        l2_flush=bool(eff["l2_flush"]),
        gpu_timer=str(eff["gpu_timer"]),
        host_timer=str(eff["host_timer"]),
        statistics=tuple(eff["statistics"]),
        outlier_k=float(eff["outliers"]["k"]),
        median_ci_confidence=float(eff["median_ci"]["confidence"]),
        alpha=float(eff["comparison"]["alpha"]),
        regression_threshold=float(eff["comparison"]["regression_threshold"]),
        reproducibility_tolerance=float(eff["reproducibility_tolerance"]),
        throttle_sm_clock_fraction=float(eff["throttle_sm_clock_fraction"]),
        power_sample_interval_s=float(eff["power_sample_interval_s"]),
        cache_lengths=tuple(int(x) for x in eff["cache_lengths"]),
        scaling_lengths=tuple(int(x) for x in eff["scaling_lengths"]),
        prompts=tuple(str(x) for x in e2e["prompts"]),
        temperature=float(e2e["temperature"]),
        seed=int(e2e["seed"]),
        num_predict=int(e2e["num_predict"]),
        e2e_warmup_runs=int(e2e["warmup_runs"]),
        e2e_runs=int(e2e["runs"]),
        request_timeout_s=float(e2e["request_timeout_s"]),
        data=raw,
    )
