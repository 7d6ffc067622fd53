"""The benchmark runner behind ``python bench/run.py``.

``bench/run.py`` only calls :func:`main` with the path of the ``bench/`` folder; everything else is here so it
is tested. The runner loads the frozen methodology, discovers the suites in ``bench/suites/`` (their interface
is documented in ``bench/suites/__init__.py``), records the environment, runs each requested suite as one
*section* inside a :class:`~edgellm_ext.power.PowerSampler`, writes the results file after every item, then
writes the markdown report and charts, and saves or compares a baseline.

Faults never lose data: a suite that is not available, or that raises :class:`SuiteSkip` (server unreachable,
model missing, no GPU, ...), is recorded as ``skipped`` with its one-line reason; any other exception marks the
section ``error`` with a one-line reason and the run goes on; Ctrl-C marks the section and the run
``interrupted``. Everything yielded before stays in the file.

Exit codes: 0 success (skipped sections included), 1 a regression against ``--compare``, 2 bad arguments,
3 a suite raised an unexpected error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shlex
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from . import results as R
from .envinfo import _run_smi, collect_environment, machine_slug, utc_now_iso
from .methodology import Methodology, load_methodology
from .models import ModelConfig, get_model, model_names
from .power import PowerSampler

__all__ = ["SuiteContext", "SuiteSkip", "discover_suites", "main"]

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_SUITE_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_BASELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SuiteSkip(Exception):
    """Raised by a suite for an expected fault (no GPU, server unreachable, ...): the section is recorded as
    skipped with ``str(exc)`` as its one-line reason; items already yielded are kept."""


@dataclasses.dataclass
class SuiteContext:
    """What a suite gets: the effective methodology, the selected models, engine options and helpers.

    ``models`` is None when the user gave no ``--model`` (the suite picks its default set). ``options`` holds the
    engine endpoints (``ollama_url``, ``openai_url``, ``openai_model``, ``api_key``) and ``request_timeout_s``.
    """

    methodology: Methodology
    models: Optional[list[ModelConfig]]
    options: dict[str, Any]
    environment: dict[str, Any]
    log: Callable[[str], None]
    nvml: Any = "auto"

    @property
    def quick(self) -> bool:
        return self.methodology.quick

    def progress(self, iterable: Iterable[Any], desc: str, total: Optional[int] = None) -> Iterable[Any]:
        """``iterable`` wrapped in a tqdm progress bar on a terminal (plain iterable without tqdm or a TTY)."""
        try:
            from tqdm import tqdm  # noqa: PLC0415 - optional
        except ImportError:
            return iterable
        return tqdm(iterable, desc=desc, total=total, leave=False, disable=None, file=sys.stderr)

    def power_sampler(self) -> PowerSampler:
        """A fresh sampler for one timed part (use as a context manager, then ``.result()``)."""
        m = self.methodology
        return PowerSampler(nvml=self.nvml, interval_s=m.power_sample_interval_s,
                            throttle_fraction=m.throttle_sm_clock_fraction)


@dataclasses.dataclass
class LoadedSuite:
    name: str
    module: Optional[ModuleType]
    kind: str
    description: str
    import_error: Optional[str] = None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def discover_suites(directory: Path) -> dict[str, LoadedSuite]:
    """Import every ``<directory>/<name>.py`` not starting with "_" as a suite (see bench/suites/__init__.py).

    A file that fails to import is kept as a suite whose section will be skipped with the import error.
    """
    suites: dict[str, LoadedSuite] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        mod_name = f"edgellm_bench_suites.{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            missing = [a for a in ("NAME", "KIND", "available", "run") if not hasattr(module, a)]
            if missing:
                raise AttributeError(f"suite file {path.name} lacks {', '.join(missing)}")
            R._check_kind(module.KIND)
            suites[module.NAME] = LoadedSuite(module.NAME, module, module.KIND,
                                              getattr(module, "DESCRIPTION", ""))
        except Exception as e:  # a broken suite file must not stop the others
            suites[path.stem] = LoadedSuite(path.stem, None, "host", "(failed to import)", _one_line(e))
    return suites


def _parser(suite_names: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="edgellm_ext benchmarks: frozen methodology, labelled kernel-only / end-to-end / host results.",
    )
    p.add_argument("--suite", action="append", metavar="NAME",
                   help=f"suite to run (repeat or comma-separate); default: all of {', '.join(suite_names)}")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="registry model (repeat or comma-separate); default: each suite's own set")
    p.add_argument("--quick", action="store_true", help="smoke run with the methodology's 'quick' settings")
    p.add_argument("--out", metavar="DIR", help="results folder (default bench/results/<gpu-or-cpu-name>/)")
    p.add_argument("--methodology", default="1.0", metavar="VERSION", help="methodology version (default 1.0)")
    p.add_argument("--save-baseline", metavar="NAME", help="freeze this run as bench/baselines/NAME.json")
    p.add_argument("--compare", metavar="NAME", help="compare with bench/baselines/NAME.json; exit 1 on regression")
    p.add_argument("--threshold", type=float, default=None,
                   help="regression threshold as a fraction (default: the methodology's, 0.10)")
    p.add_argument("--baselines-dir", metavar="DIR", help="baseline folder (default bench/baselines/)")
    p.add_argument("--ollama-url", default=os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434")
    p.add_argument("--openai-url", default="http://127.0.0.1:8080",
                   help="base URL of an OpenAI-compatible server (llama.cpp server, vLLM, SGLang)")
    p.add_argument("--openai-model", help="model id on the OpenAI-compatible server (default: the first served)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="bearer token for --openai-url")
    p.add_argument("--request-timeout", type=float, default=None, metavar="S",
                   help="per-request timeout in seconds (default: the methodology's)")
    p.add_argument("--no-report", action="store_true", help="write results JSON only")
    p.add_argument("--list", action="store_true", help="list suites and models, then exit")
    p.add_argument("--no-nvml", action="store_true", help="do not use NVML (power/GPU records say so)")
    return p


def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _redact(argv: Sequence[str]) -> list[str]:
    """argv with the --api-key value replaced: results files are committed and shared."""
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
        elif a == "--api-key":
            out.append(a)
            hide_next = True
        elif a.startswith("--api-key="):
            out.append("--api-key=<redacted>")
        else:
            out.append(a)
    return out


def _print_err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_section(writer: R.ResultsWriter, suite: LoadedSuite, ctx: SuiteContext) -> str:
    """Run one suite as one section. Returns the section status."""
    started = time.perf_counter()
    section = writer.start_section(suite.name, suite.kind, utc_now_iso())
    label = f"[{suite.name}]"
    if suite.module is None:
        reason = f"suite failed to import: {suite.import_error}"
        _print_err(f"{label} skipped: {reason}")
        writer.finish_section(section, "skipped", reason, time.perf_counter() - started, None)
        return "skipped"
    try:
        ok, why = suite.module.available(ctx)
    except Exception as e:
        ok, why = False, f"availability check failed: {_one_line(e)}"
    if not ok:
        why = " ".join(str(why or "").split()) or "not available (the suite gave no reason)"
        _print_err(f"{label} skipped: {why}")
        writer.finish_section(section, "skipped", why, time.perf_counter() - started, None)
        return "skipped"
    ctx.log(f"{label} running ({suite.kind})")
    sampler = ctx.power_sampler()
    status, reason = "ok", None
    try:
        with sampler:
            items: Iterator[dict[str, Any]] = iter(suite.module.run(ctx))
            for item in items:
                writer.add_item(section, item)
                if item.get("type") == "skip":
                    _print_err(f"{label} {item['name']} skipped: {item['reason']}")
    except SuiteSkip as e:
        status, reason = "skipped", " ".join(str(e).split()) or "skipped by the suite"
        _print_err(f"{label} skipped: {reason}")
    except KeyboardInterrupt:
        writer.finish_section(section, "interrupted", "interrupted by the user (Ctrl-C)",
                              time.perf_counter() - started, sampler.result())
        raise
    except Exception as e:
        status, reason = "error", _one_line(e)
        _print_err(f"{label} error: {reason}")
        if os.environ.get("EDGELLM_BENCH_TRACEBACK"):
            traceback.print_exc()
    writer.finish_section(section, status, reason, time.perf_counter() - started, sampler.result())
    return status


def _print_summary(doc: dict[str, Any]) -> None:
    for section in doc["sections"]:
        head = f"[{section['suite']}] {section['status']}"
        if section["reason"]:
            head += f": {section['reason']}"
        print(head)
        for m in section["measurements"]:
            s = m.get("stats")
            if s:
                print(f"  {m['kind']:<11} {m['name']:<48} median {s['median']:.4g} {m['unit']} "
                      f"(p95 {s['p95']:.4g}, n={s['n_kept']}/{s['n_samples']})")
        for t in section["targets"]:
            verdict = {True: "PASS", False: "FAIL", None: "-"}[t["pass"]]
            measured = "-" if t["measured"] is None else f"{t['measured']:.4g} {t['unit']}"
            print(f"  target {t['target']:<40} {measured:<16} {verdict:<5} {t['status']}")


def _print_compare(result: dict[str, Any]) -> None:
    for w in result["warnings"]:
        print(f"warning: {w}")
    for r in result["rows"]:
        p = "-" if r["p_value"] is None else f"{r['p_value']:.2g}"
        print(f"  {r['verdict']:<22} {r['change']:+7.1%}  {r['name']} [{r['metric']}, {r['unit']}] "
              f"{r['baseline_median']:.4g} -> {r['current_median']:.4g} (p={p})")
    if result["missing"]:
        print(f"  {len(result['missing'])} baseline measurement(s) not in this run")
    if result["regressions"]:
        print(f"REGRESSIONS beyond {result['threshold']:.0%}:")
        for r in result["regressions"]:
            print(f"  {r['name']} [{r['metric']}]: {r['change']:+.1%} ({r['baseline_median']:.4g} -> "
                  f"{r['current_median']:.4g} {r['unit']})")


def main(argv: Optional[Sequence[str]], bench_dir: Path) -> int:
    """Entry point of bench/run.py. ``bench_dir`` is the bench/ folder (methodology, schema, suites, ...)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_dir = Path(bench_dir).resolve()
    suites = discover_suites(bench_dir / "suites")
    parser = _parser(list(suites))
    args = parser.parse_args(argv)

    if args.list:
        print("suites:")
        for s in suites.values():
            print(f"  {s.name:<10} {s.kind:<12} {s.description}")
        print("models:")
        for name in model_names():
            print(f"  {name}")
        return EXIT_OK

    try:
        methodology = load_methodology(args.methodology, bench_dir / "methodology", quick=args.quick)
    except ValueError as e:
        _print_err(f"error: {e}")
        return EXIT_USAGE

    wanted = _split(args.suite) or list(suites)
    unknown = [s for s in wanted if s not in suites]
    if unknown:
        _print_err(f"error: unknown suite(s) {', '.join(unknown)}; valid suites: {', '.join(suites)}")
        return EXIT_USAGE
    models: Optional[list[ModelConfig]] = None
    if args.model:
        try:
            models = [get_model(n) for n in _split(args.model)]
        except KeyError as e:
            _print_err(f"error: {e.args[0]}")
            return EXIT_USAGE
    threshold = methodology.regression_threshold if args.threshold is None else args.threshold
    if not (0 <= threshold < 10):
        _print_err(f"error: --threshold must be a fraction such as 0.10, got {args.threshold}")
        return EXIT_USAGE
    baselines_dir = Path(args.baselines_dir) if args.baselines_dir else bench_dir / "baselines"
    if args.save_baseline is not None:
        if not _BASELINE_NAME.match(args.save_baseline):
            _print_err(f"error: baseline name {args.save_baseline!r}: use letters, digits, '.', '_' and '-'")
            return EXIT_USAGE
        if (baselines_dir / f"{args.save_baseline}.json").exists():
            _print_err(f"error: baseline {args.save_baseline!r} already exists in {baselines_dir}; baselines are "
                       f"frozen: choose a new name")
            return EXIT_USAGE
    baseline_doc = None
    if args.compare is not None:
        path = baselines_dir / f"{args.compare}.json"
        if not path.is_file():
            known = sorted(p.stem for p in baselines_dir.glob("*.json")) if baselines_dir.is_dir() else []
            _print_err(f"error: no baseline {args.compare!r} in {baselines_dir}; "
                       f"available: {', '.join(known) or 'none'}")
            return EXIT_USAGE
        try:
            baseline_doc = R.load_document(path)
        except ValueError as e:
            _print_err(f"error: {e}")
            return EXIT_USAGE

    nvml: Any = None if args.no_nvml else "auto"
    env = collect_environment(bench_dir.parent, nvml=nvml, smi_runner=None if args.no_nvml else _run_smi)
    out_dir = Path(args.out) if args.out else bench_dir / "results" / machine_slug(env)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ("-quick" if args.quick else "")
    run_dir = out_dir / run_id
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_dir / f"{run_id}-{n}"
    shown_argv = _redact(argv)
    command = [sys.executable, str(bench_dir / "run.py"), *shown_argv]
    run = {
        "id": run_dir.name,
        "status": "running",
        "started_utc": utc_now_iso(),
        "finished_utc": None,
        "command": command,
        "command_line": shlex.join(["python", "bench/run.py", *shown_argv]),
        "cwd": os.getcwd(),
        "git": env["git"],
        "methodology": methodology.record(),
        "suites": wanted,
        "models": None if models is None else [m.name for m in models],
        "options": {"ollama_url": args.ollama_url, "openai_url": args.openai_url, "openai_model": args.openai_model,
                    "request_timeout_s": args.request_timeout or methodology.request_timeout_s},
    }
    results_path = run_dir / "results.json"
    writer = R.ResultsWriter(results_path, run, env)
    print(f"results: {results_path}")
    if env["gpu"]["available"]:
        print(f"gpu: {env['gpu']['devices'][0].get('name')}")
    else:
        print(f"gpu: none ({env['gpu']['reason']})")
    ctx = SuiteContext(
        methodology=methodology,
        models=models,
        options={"ollama_url": args.ollama_url, "openai_url": args.openai_url, "openai_model": args.openai_model,
                 "api_key": args.api_key,
                 "request_timeout_s": args.request_timeout or methodology.request_timeout_s},
        environment=env,
        log=lambda msg: print(msg, flush=True),
        nvml=nvml,
    )
    exit_code = EXIT_OK
    try:
        for name in wanted:
            if _run_section(writer, suites[name], ctx) == "error":
                exit_code = EXIT_SUITE_ERROR
    except KeyboardInterrupt:
        writer.finish("interrupted", utc_now_iso(), {"exit_code": EXIT_INTERRUPTED})
        _print_err(f"interrupted: finished sections are kept in {results_path}")
        return EXIT_INTERRUPTED

    compare_result = None
    if baseline_doc is not None:
        compare_result = R.compare_documents(baseline_doc, writer.doc, threshold=threshold, alpha=methodology.alpha)
        print(f"compare with baseline {args.compare!r} (threshold {threshold:.0%}):")
        _print_compare(compare_result)
        if compare_result["regressions"]:
            exit_code = EXIT_REGRESSION if exit_code == EXIT_OK else exit_code
        writer.doc["run"]["baseline"] = {"name": args.compare, **compare_result}
    writer.finish("complete", utc_now_iso(), {"exit_code": exit_code})
    _print_summary(writer.doc)

    if not args.no_report:
        from .report import write_report  # noqa: PLC0415 - matplotlib import is slow; only when needed

        paths = write_report(writer.doc, run_dir)
        print(f"report: {paths['report']}")
        if paths.get("charts_skipped"):
            print(f"charts skipped: {paths['charts_skipped']}")
    if args.save_baseline is not None:
        errored = [s["suite"] for s in writer.doc["sections"] if s["status"] == "error"]
        if errored:
            _print_err(f"baseline {args.save_baseline!r} not saved: section(s) {', '.join(errored)} ended with an "
                       f"error; a baseline must be a clean run")
            return exit_code
        baselines_dir.mkdir(parents=True, exist_ok=True)
        target = baselines_dir / f"{args.save_baseline}.json"
        R.write_json_atomic(target, writer.doc)
        print(f"baseline saved: {target}")
    return exit_code
