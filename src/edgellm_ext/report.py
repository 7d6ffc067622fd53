"""Markdown report and PNG charts from a results document (``edgellm-results/1``).

Charts (matplotlib, Agg backend, fixed size ``CHART_SIZE_PX`` so they are comparable between runs):

- ``latency_vs_cache_len.png``: measurements whose ``params`` carry ``cache_len`` (kernel suites), median with
  the 95% CI of the median, one line per (model, engine), log-log axes.
- ``dist_<suite>.png``: box plots of the raw samples of every time measurement of a section (the distribution,
  outliers included).
- ``ratios_<suite>.png``: the section's side-by-side comparisons (ratio of medians with its bootstrap CI).
- ``engine_comparison.png``: decode rates (tok/s) of every end-to-end measurement, per engine and model.

Without matplotlib the report says the charts were skipped and why.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["CHART_SIZE_PX", "render_markdown", "write_report"]

CHART_SIZE_PX = (960, 540)
_DPI = 100
_TIME_UNITS = {"ns", "us", "ms", "s"}
_LABELS = {
    "kernel-only": "device time of kernels alone (CUDA events); per-token figures from them are kernel-only "
                   "estimates, not engine speeds",
    "end-to-end": "an engine's whole pipeline as a client sees it (tokenize, prefill, decode, sample, stream)",
    "host": "host-clock time of calls made from Python (the Python call overhead is included)",
}


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            return "-"
        return f"{x:.{digits}g}"
    return str(x)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _env_lines(doc: dict[str, Any]) -> list[str]:
    env = doc.get("environment", {})
    gpu = env.get("gpu", {})
    lines = []
    if gpu.get("available"):
        for d in gpu.get("devices", []):
            mem = d.get("memory_total_bytes")
            lines.append(f"- GPU {d.get('index')}: {d.get('name')} (cc {d.get('compute_capability')}, "
                         f"{_fmt(None if mem is None else mem / 2**30, 3)} GiB, power limit "
                         f"{_fmt(d.get('power_limit_w'), 4)} W, SM clock {d.get('sm_clock_mhz')}/"
                         f"{d.get('sm_clock_max_mhz')} MHz, persistence {d.get('persistence_mode')}, PCIe gen "
                         f"{d.get('pcie_gen')} x{d.get('pcie_width')}); driver {gpu.get('driver_version')}, "
                         f"CUDA driver {gpu.get('cuda_driver_version')} (via {gpu.get('source')})")
    else:
        lines.append(f"- GPU: none ({gpu.get('reason')})")
    cpu = env.get("cpu", {})
    ram = cpu.get("ram_total_bytes")
    lines.append(f"- CPU: {cpu.get('model')} ({cpu.get('cores')} cores, {cpu.get('threads')} threads, SIMD flags "
                 f"{', '.join(cpu.get('simd_flags') or []) or '-'}); RAM "
                 f"{_fmt(None if ram is None else ram / 2**30, 3)} GiB")
    os_ = env.get("os", {})
    py = env.get("python", {})
    lines.append(f"- OS: {os_.get('platform')}; Python {py.get('version')}; numpy BLAS: {env.get('numpy_blas')}")
    b = env.get("edgellm_ext", {})
    if "error" in b:
        lines.append(f"- edgellm_ext build: unavailable ({b['error']})")
    else:
        lines.append(f"- edgellm_ext {b.get('version')}: {b.get('compiler')} {b.get('build_type')}, SIMD "
                     f"{b.get('simd')} (compiled: {', '.join(b.get('simd_compiled') or [])}), CUDA compiled "
                     f"{b.get('cuda_compiled')} (arch {b.get('cuda_architectures')})")
    return lines


def _power_line(power: Optional[dict[str, Any]]) -> Optional[str]:
    if not power:
        return None
    gpu = power.get("gpu") or {}
    host = power.get("host") or {}
    parts = []
    if gpu.get("available"):
        parts.append(f"GPU avg {_fmt(gpu.get('avg_power_w'))} W, peak {_fmt(gpu.get('peak_power_w'))} W, energy "
                     f"{_fmt(gpu.get('energy_j'))} J ({gpu.get('energy_method')}), {gpu.get('samples')} samples, "
                     f"SM clock min {gpu.get('sm_clock_min_mhz')} of max {gpu.get('sm_clock_max_mhz')} MHz"
                     + (" **THROTTLED**" if gpu.get("throttled") else ""))
    else:
        parts.append(f"GPU power: unavailable ({gpu.get('reason')})")
    if host.get("available"):
        parts.append(f"host CPU {_fmt(host.get('cpu_percent'), 3)}%")
    else:
        parts.append(f"host CPU: unavailable ({host.get('reason')})")
    return f"Power/resources over the section ({_fmt(power.get('duration_s'), 3)} s): " + "; ".join(parts)


def render_markdown(doc: dict[str, Any], charts: list[str], charts_skipped: Optional[str],
                    chart_notes: list[str]) -> str:
    run = doc.get("run", {})
    meth = run.get("methodology", {})
    git = run.get("git", {})
    out = [f"# Benchmark report {run.get('id')}", ""]
    out.append(f"- Command: `{run.get('command_line')}`")
    out.append(f"- Status: {run.get('status')} (exit code {run.get('exit_code')}); started {run.get('started_utc')}, "
               f"finished {run.get('finished_utc')}")
    dirty = " (dirty working tree)" if git.get("dirty") else ""
    out.append(f"- Git commit: {git.get('commit') or 'unknown: ' + str(git.get('reason'))}{dirty}")
    out.append(f"- Methodology v{meth.get('version')}" + (" **QUICK smoke run: not comparable with full runs**"
                                                         if meth.get("quick") else "")
               + f": {meth.get('warmup_iterations')} warm-up, {meth.get('iterations')} iterations, IQR outlier rule "
               f"k={meth.get('outlier_k')}, statistics on kept samples (min/max over all); end-to-end "
               f"{meth.get('e2e_warmup_runs')} warm-up + {meth.get('e2e_runs')} runs, num_predict "
               f"{meth.get('num_predict')}, temperature {meth.get('temperature')}")
    out += _env_lines(doc)
    out += ["", "Labels: " + "; ".join(f"**{k}** = {v}" for k, v in _LABELS.items()) + ".", ""]

    for section in doc.get("sections", []):
        out.append(f"## {section['suite']} ({section['kind']}): {section['status']}")
        out.append("")
        if section.get("reason"):
            out += [f"Reason: {section['reason']}", ""]
        pl = _power_line(section.get("power"))
        if pl:
            out += [pl, ""]
        for text in section.get("notes", []):
            out.append(f"> {text}")
        if section.get("notes"):
            out.append("")
        ms = section.get("measurements", [])
        if ms:
            out.append("| measurement | kind | engine | model | unit | median | 95% CI of median | p95 | p99 | "
                       "mean ± std | kept/n |")
            out.append("|---|---|---|---|---|---|---|---|---|---|---|")
            for m in ms:
                s = m.get("stats") or {}
                out.append(
                    f"| {_cell(m['name'])} | {m['kind']} | {_cell(m['engine'])} | {_cell(m.get('model') or '-')} | "
                    f"{m['unit']} | {_fmt(s.get('median'))} | [{_fmt(s.get('median_ci_low'))}, "
                    f"{_fmt(s.get('median_ci_high'))}] | {_fmt(s.get('p95'))} | {_fmt(s.get('p99'))} | "
                    f"{_fmt(s.get('mean'))} ± {_fmt(s.get('std'), 3)} | "
                    f"{s.get('n_kept', '-')}/{s.get('n_samples', '-')} |")
            out.append("")
        cs = section.get("comparisons", [])
        if cs:
            out.append("| comparison | ratio of medians | 95% CI (bootstrap) | Mann-Whitney p |")
            out.append("|---|---|---|---|")
            for c in cs:
                out.append(f"| {_cell(c['name'])} ({_cell(c.get('description') or '')}) | {_fmt(c['ratio'])} | "
                           f"[{_fmt(c['ratio_low'])}, {_fmt(c['ratio_high'])}] | {_fmt(c['p_value'], 2)} |")
            out.append("")
        ts = section.get("targets", [])
        if ts:
            out.append("| target | threshold | measured | result | status |")
            out.append("|---|---|---|---|---|")
            for t in ts:
                result = {True: "PASS", False: "FAIL", None: "-"}[t["pass"]]
                notes = f" ({t['notes']})" if t.get("notes") else ""
                out.append(f"| {_cell(t['target'])} | < {_fmt(t['threshold'])} {t['unit']} | "
                           f"{_fmt(t['measured'])} {t['unit'] if t['measured'] is not None else ''} | {result} | "
                           f"{_cell(t['status'] + notes)} |")
            out.append("")
        for sk in section.get("skipped", []):
            out.append(f"- skipped {sk['name']}: {sk['reason']}")
        if section.get("skipped"):
            out.append("")

    base = run.get("baseline")
    if base:
        out += [f"## Baseline comparison: {base.get('name')} (threshold {_fmt(base.get('threshold'))})", ""]
        for w in base.get("warnings", []):
            out.append(f"- warning: {w}")
        out.append("")
        out.append("| measurement | metric | baseline median | current median | change | ratio 95% CI | p | verdict |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in base.get("rows", []):
            out.append(f"| {_cell(r['name'])} | {r['metric']} ({r['unit']}) | {_fmt(r['baseline_median'])} | "
                       f"{_fmt(r['current_median'])} | {r['change']:+.1%} | [{_fmt(r['ratio_low'])}, "
                       f"{_fmt(r['ratio_high'])}] | {_fmt(r['p_value'], 2)} | {r['verdict']} |")
        out.append("")
        out.append(f"{len(base.get('regressions', []))} regression(s); {len(base.get('missing', []))} baseline "
                   f"measurement(s) missing from this run; {len(base.get('new', []))} new.")
        out.append("")

    out += ["## Charts", ""]
    if charts_skipped:
        out.append(f"Charts skipped: {charts_skipped}")
    for c in charts:
        out.append(f"![{c}](charts/{c})")
    for n in chart_notes:
        out.append(f"- {n}")
    out.append("")
    return "\n".join(out)


def _new_figure(plt: Any) -> tuple[Any, Any]:
    w, h = CHART_SIZE_PX
    fig, ax = plt.subplots(figsize=(w / _DPI, h / _DPI), dpi=_DPI)
    return fig, ax


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=_DPI)  # no bbox_inches="tight": keep the fixed pixel size


def _draw_charts(doc: dict[str, Any], chart_dir: Path) -> tuple[list[str], list[str]]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    chart_dir.mkdir(parents=True, exist_ok=True)
    # boxplot's vert= is deprecated from matplotlib 3.10 on (orientation= replaces it).
    mpl_version = tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2])
    horizontal = {"orientation": "horizontal"} if mpl_version >= (3, 10) else {"vert": False}
    made: list[str] = []
    notes: list[str] = []
    sections = doc.get("sections", [])

    # 1. latency vs cache length per model
    lines: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    unit = None
    for section in sections:
        for m in section.get("measurements", []):
            cl = (m.get("params") or {}).get("cache_len")
            s = m.get("stats")
            if cl is None or not s or m["unit"] not in _TIME_UNITS:
                continue
            unit = m["unit"]
            key = (m.get("model") or "-", m["engine"] + (f" {m['metric']}" if m["metric"] != "latency" else ""))
            lines.setdefault(key, []).append((float(cl), s["median"], s["median_ci_low"], s["median_ci_high"]))
    if lines:
        fig, ax = _new_figure(plt)
        for (model, engine), pts in sorted(lines.items()):
            pts.sort()
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{model} · {engine}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: PLC0415

        plain = FuncFormatter(lambda v, _pos: f"{v:g}")
        ax.set_xticks(sorted({p[0] for pts in lines.values() for p in pts}))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("cache length (tokens)")
        ax.set_ylabel(f"median latency ({unit}), 95% CI")
        ax.set_title("Latency vs cache length")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        _save(fig, chart_dir / "latency_vs_cache_len.png")
        plt.close(fig)
        made.append("latency_vs_cache_len.png")
    else:
        notes.append("latency vs cache length: not drawn (no measurement with params.cache_len in this run)")

    # 2. distributions and 3. ratios, per section
    for section in sections:
        ms = [m for m in section.get("measurements", [])
              if m["unit"] in _TIME_UNITS and len(m.get("samples") or []) > 1]
        if ms:
            units = sorted({m["unit"] for m in ms})
            for u in units:
                group = [m for m in ms if m["unit"] == u][:40]
                fig, ax = _new_figure(plt)
                ax.boxplot([m["samples"] for m in group], showfliers=True, whis=1.5, **horizontal)
                ax.set_yticks(range(1, len(group) + 1))
                ax.set_yticklabels([m["name"][:60] for m in group], fontsize=6)
                ax.set_xscale("log")
                ax.set_xlabel(f"{u} (all samples; whiskers 1.5 IQR)")
                ax.set_title(f"{section['suite']} ({section['kind']}): sample distributions")
                ax.grid(True, axis="x", which="both", alpha=0.3)
                fig.tight_layout()
                name = f"dist_{_slug(section['suite'])}" + (f"_{u}" if len(units) > 1 else "") + ".png"
                _save(fig, chart_dir / name)
                plt.close(fig)
                made.append(name)
        cs = section.get("comparisons", [])
        if cs:
            cs = cs[:40]
            fig, ax = _new_figure(plt)
            y = range(len(cs))
            ratios = [c["ratio"] for c in cs]
            err = [[c["ratio"] - c["ratio_low"] for c in cs], [c["ratio_high"] - c["ratio"] for c in cs]]
            ax.errorbar(ratios, list(y), xerr=err, fmt="o", capsize=3)
            ax.axvline(1.0, color="grey", linestyle="--")
            ax.set_yticks(list(y))
            ax.set_yticklabels([c["name"][:60] for c in cs], fontsize=6)
            ax.set_xscale("log")
            ax.set_xlabel("ratio of medians (95% bootstrap CI)")
            ax.set_title(f"{section['suite']}: side-by-side ratios")
            fig.tight_layout()
            name = f"ratios_{_slug(section['suite'])}.png"
            _save(fig, chart_dir / name)
            plt.close(fig)
            made.append(name)

    # 4. engine comparison: decode rates
    bars = []
    for section in sections:
        for m in section.get("measurements", []):
            if m["kind"] == "end-to-end" and m["unit"] == "tok/s" and m.get("stats") and "decode" in m["metric"]:
                bars.append(m)
    if bars:
        fig, ax = _new_figure(plt)
        labels = [f"{m['engine']} · {m.get('model') or '-'} · {m['metric']}" for m in bars]
        med = [m["stats"]["median"] for m in bars]
        err = [[m["stats"]["median"] - m["stats"]["median_ci_low"] for m in bars],
               [m["stats"]["median_ci_high"] - m["stats"]["median"] for m in bars]]
        ax.barh(range(len(bars)), med, xerr=err, capsize=3)
        ax.set_yticks(range(len(bars)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("decode rate, tok/s (median, 95% CI) — end-to-end")
        ax.set_title("Engine comparison")
        fig.tight_layout()
        _save(fig, chart_dir / "engine_comparison.png")
        plt.close(fig)
        made.append("engine_comparison.png")
    else:
        notes.append("engine comparison: not drawn (no end-to-end decode rate in this run)")
    return made, notes


def write_report(doc: dict[str, Any], run_dir: Union[str, Path]) -> dict[str, Any]:
    """Write ``report.md`` and ``charts/*.png`` into ``run_dir``. Returns the paths and why charts were skipped."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    charts: list[str] = []
    notes: list[str] = []
    skipped: Optional[str] = None
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        skipped = "matplotlib is not installed (pip install matplotlib, or the 'bench' extra)"
    if skipped is None:
        try:
            charts, notes = _draw_charts(doc, run_dir / "charts")
        except Exception as e:  # a chart must never cost the report
            skipped = f"chart drawing failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    report = run_dir / "report.md"
    report.write_text(render_markdown(doc, charts, skipped, notes), encoding="utf-8")
    return {"report": report, "charts": [run_dir / "charts" / c for c in charts], "charts_skipped": skipped}
