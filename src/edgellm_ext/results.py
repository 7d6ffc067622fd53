"""Benchmark results: item builders, the incremental atomic writer, validation, baselines.

The document format is ``edgellm-results/1``, defined by the JSON Schema ``bench/schema/results-v1.json`` and
described in ``docs/results-schema.md``. A document has a ``run`` header (command line, git commit, methodology),
the ``environment`` record and a list of ``sections`` (one per suite run). A section holds ``measurements``,
``comparisons``, ``targets``, ``skipped`` items and ``notes``; suites build these with :func:`measurement`,
:func:`comparison`, :func:`target`, :func:`skip` and :func:`note` and yield them to the runner.

Every measurement is labelled with its ``kind``:

- ``kernel-only``: device time of kernels alone (CUDA events); per-token figures built from kernel times are
  estimates of the kernels' share, not of an engine.
- ``end-to-end``: an engine's full pipeline (tokenize, prefill, decode, sample, stream), as a user sees it.
- ``host``: time on the host clock of a call made from Python (includes the Python call overhead).

:class:`ResultsWriter` rewrites the whole file atomically (temporary file in the same folder, fsync,
``os.replace``) after every item, so an interrupted run keeps everything finished before the interruption.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import stats as _stats

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "ResultsWriter",
    "compare_documents",
    "comparison",
    "iter_measurements",
    "load_document",
    "measurement",
    "measurement_key",
    "note",
    "skip",
    "target",
    "validate_document",
    "write_json_atomic",
]

SCHEMA_VERSION = "edgellm-results/1"
KINDS = ("kernel-only", "end-to-end", "host")
_LOWER_IS_BETTER_UNITS = {"ns", "us", "ms", "s", "bytes", "J", "W"}


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def measurement(
    *,
    name: str,
    kind: str,
    engine: str,
    metric: str,
    unit: str,
    samples: Union[Sequence[float], np.ndarray],
    params: Optional[dict[str, Any]] = None,
    model: Optional[str] = None,
    better: Optional[str] = None,
    outlier_k: Optional[float] = 1.5,
    notes: Optional[str] = None,
    extra: Optional[dict[str, Any]] = None,
    power: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """One measured quantity with its raw samples and :func:`edgellm_ext.stats.summarize` statistics.

    ``better`` is "lower" or "higher" (default: lower for time/bytes/energy units, higher otherwise, e.g. tok/s);
    baseline comparisons use it to tell a regression from an improvement. ``outlier_k`` is the IQR rule's k
    (None: keep every sample, e.g. for per-run server figures where an outlier is information).
    """
    _check_kind(kind)
    arr = np.asarray(samples, dtype=np.float64).ravel()
    if better is None:
        better = "lower" if unit in _LOWER_IS_BETTER_UNITS else "higher"
    if better not in ("lower", "higher"):
        raise ValueError(f"better: expected 'lower' or 'higher', got {better!r}")
    summary = _stats.summarize(arr, outlier_k=outlier_k) if arr.size else None
    return _jsonable({
        "type": "measurement",
        "name": name,
        "kind": kind,
        "engine": engine,
        "metric": metric,
        "unit": unit,
        "better": better,
        "model": model,
        "params": params or {},
        "samples": arr,
        "stats": summary,
        "notes": notes,
        "extra": extra or {},
        "power": power,
    })


def comparison(
    *,
    name: str,
    a: dict[str, Any],
    b: dict[str, Any],
    description: Optional[str] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Side-by-side comparison of two measurements taken in the same run: ratio of medians a/b with a bootstrap
    confidence interval and the Mann-Whitney p-value (both on the raw samples)."""
    for side, m in (("a", a), ("b", b)):
        if not m.get("samples"):
            raise ValueError(f"{side}: measurement {m.get('name')!r} has no samples to compare")
    if a["unit"] != b["unit"]:
        raise ValueError(f"units differ: a is {a['unit']}, b is {b['unit']}")
    boot = _stats.bootstrap_median_ratio(a["samples"], b["samples"], seed=seed)
    mw = _stats.mann_whitney_u(a["samples"], b["samples"])
    return _jsonable({
        "type": "comparison",
        "name": name,
        "a": a["name"],
        "b": b["name"],
        "metric": a["metric"],
        "unit": a["unit"],
        "ratio": boot["ratio"],
        "ratio_low": boot["low"],
        "ratio_high": boot["high"],
        "confidence": boot["confidence"],
        "p_value": mw["p_value"],
        "description": description or f"median({a['name']}) / median({b['name']})",
    })


def target(
    *,
    target: str,
    threshold: Optional[float],
    unit: str,
    measured: Optional[float],
    status: str,
    notes: Optional[str] = None,
) -> dict[str, Any]:
    """A pass/fail row: ``measured < threshold`` passes. ``measured=None`` (not measured) gives ``pass: None``
    and ``status`` must say why (e.g. "not measured: kernel not in this build")."""
    passed = None if measured is None or threshold is None else bool(measured < threshold)
    return _jsonable({"type": "target", "target": target, "threshold": threshold, "unit": unit,
                      "measured": measured, "pass": passed, "status": status, "notes": notes})


def skip(name: str, reason: str) -> dict[str, Any]:
    """A part of a suite that did not run, with a one-line reason."""
    return {"type": "skip", "name": name, "reason": " ".join(str(reason).split())}


def note(text: str) -> dict[str, Any]:
    """A line of context for the report (what was measured how, caveats)."""
    return {"type": "note", "text": str(text)}


_ITEM_LISTS = {"measurement": "measurements", "comparison": "comparisons", "target": "targets", "skip": "skipped",
               "note": "notes"}


def write_json_atomic(path: Union[str, Path], doc: Any) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and ``os.replace`` (atomic on POSIX)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class ResultsWriter:
    """Holds one results document and rewrites it atomically after every change."""

    def __init__(self, path: Union[str, Path], run: dict[str, Any], environment: dict[str, Any]) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run": _jsonable(run),
                                    "environment": _jsonable(environment), "sections": []}
        self.doc["run"].setdefault("status", "running")
        self.flush()

    def flush(self) -> None:
        write_json_atomic(self.path, self.doc)

    def start_section(self, suite: str, kind: str, started_utc: str) -> dict[str, Any]:
        section = {"suite": suite, "kind": _check_kind(kind), "status": "running", "reason": None,
                   "started_utc": started_utc, "duration_s": None, "power": None,
                   "measurements": [], "comparisons": [], "targets": [], "skipped": [], "notes": []}
        self.doc["sections"].append(section)
        self.flush()
        return section

    def add_item(self, section: dict[str, Any], item: dict[str, Any]) -> None:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in _ITEM_LISTS:
            raise ValueError(f"suite yielded {type(item).__name__} {str(item)[:80]!r}: expected a dict from "
                             f"edgellm_ext.results.measurement/comparison/target/skip/note")
        if kind == "measurement":
            _check_kind(item["kind"])
        section[_ITEM_LISTS[kind]].append(item["text"] if kind == "note" else _jsonable(item))
        self.flush()

    def finish_section(self, section: dict[str, Any], status: str, reason: Optional[str], duration_s: float,
                       power: Optional[dict[str, Any]]) -> None:
        section.update(status=status, reason=reason, duration_s=duration_s, power=_jsonable(power))
        self.flush()

    def finish(self, status: str, finished_utc: str, extra: Optional[dict[str, Any]] = None) -> None:
        self.doc["run"].update(status=status, finished_utc=finished_utc, **(_jsonable(extra) or {}))
        self.flush()


def load_document(path: Union[str, Path]) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{p}: expected schema_version {SCHEMA_VERSION!r}, found {found!r}")
    return doc


def validate_document(doc: Any, schema_path: Union[str, Path]) -> list[str]:
    """Errors of ``doc`` against the JSON Schema at ``schema_path`` (empty list: valid). Needs ``jsonschema``."""
    import jsonschema  # noqa: PLC0415 - only the validator needs it

    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(str(x) for x in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def iter_measurements(doc: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(section, measurement) pairs of a document."""
    for section in doc.get("sections", []):
        for m in section.get("measurements", []):
            yield section, m


def measurement_key(section: dict[str, Any], m: dict[str, Any]) -> str:
    """Identity of a measurement across runs: suite, name, engine, model, metric and params."""
    params = json.dumps(m.get("params", {}), sort_keys=True, separators=(",", ":"))
    return f"{section.get('suite')}|{m.get('name')}|{m.get('engine')}|{m.get('model')}|{m.get('metric')}|{params}"


def compare_documents(baseline: dict[str, Any], current: dict[str, Any], *, threshold: float = 0.10,
                      alpha: float = 0.05) -> dict[str, Any]:
    """Per-metric change of ``current`` against ``baseline`` (see :func:`edgellm_ext.stats.compare`).

    Returns ``{"rows": [...], "regressions": [...], "missing": [...], "new": [...], "warnings": [...]}``; rows
    and regressions carry the measurement key, name, unit, medians, change, p-value and verdict.
    """
    base = {measurement_key(s, m): m for s, m in iter_measurements(baseline) if m.get("samples")}
    cur = {measurement_key(s, m): m for s, m in iter_measurements(current) if m.get("samples")}
    warnings = []
    bm = baseline.get("run", {}).get("methodology", {})
    cm = current.get("run", {}).get("methodology", {})
    if (bm.get("version"), bm.get("quick")) != (cm.get("version"), cm.get("quick")):
        warnings.append(f"methodology differs: baseline v{bm.get('version')} quick={bm.get('quick')}, "
                        f"current v{cm.get('version')} quick={cm.get('quick')}")
    from .envinfo import machine_slug  # noqa: PLC0415

    b_machine = machine_slug(baseline.get("environment", {}))
    c_machine = machine_slug(current.get("environment", {}))
    if b_machine != c_machine:
        warnings.append(f"different machines: baseline {b_machine}, current {c_machine}")
    rows = []
    for key in sorted(base.keys() & cur.keys()):
        b, c = base[key], cur[key]
        result = _stats.compare(b["samples"], c["samples"], threshold=threshold, alpha=alpha,
                                higher_is_better=c.get("better") == "higher")
        rows.append({"key": key, "name": c["name"], "metric": c["metric"], "unit": c["unit"], **result})
    return {
        "threshold": threshold,
        "rows": rows,
        "regressions": [r for r in rows if r["verdict"] == "regression"],
        "missing": sorted(base.keys() - cur.keys()),
        "new": sorted(cur.keys() - base.keys()),
        "warnings": warnings,
    }
