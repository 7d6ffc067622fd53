"""The benchmark harness: methodology loading, host timing, environment and power records (with fake NVML),
results writing, and bench/run.py end to end (quick cpu run, schema, report, charts, baselines, faults)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgellm_ext import envinfo, harness, methodology, power, results, timing

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCHEMA = BENCH / "schema" / "results-v1.json"


# ------------------------------------------------------------------------------------------------ methodology
def test_methodology_v1_0_values():
    m = methodology.load_methodology("1.0", BENCH / "methodology")
    assert (m.warmup_iterations, m.iterations, m.l2_flush, m.gpu_timer, m.outlier_k) == (50, 200, True,
                                                                                       "cuda_events", 1.5)
    assert m.statistics == ("median", "mean", "std", "p50", "p95", "p99", "min", "max", "iqr")
    assert m.cache_lengths == (64, 128, 256, 512, 1024)
    assert m.scaling_lengths == (1024, 4096, 8192, 16384)
    assert "Hello" in m.prompts and m.temperature == 0.0 and not m.quick
    q = methodology.load_methodology("1.0", BENCH / "methodology", quick=True)
    assert q.quick and q.iterations < m.iterations and q.version == "1.0" and q.sha256 == m.sha256
    rec = q.record()
    assert rec["version"] == "1.0" and rec["quick"] is True and "data" not in rec


def test_methodology_unknown_version_lists_known():
    with pytest.raises(ValueError, match=r"unknown methodology version '9.9'.*1\.0"):
        methodology.load_methodology("9.9", BENCH / "methodology")


def test_methodology_edit_is_refused(tmp_path):
    data = json.loads((BENCH / "methodology" / "v1.0.json").read_text())
    data["iterations"] = 20
    (tmp_path / "v1.0.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="never edited"):
        methodology.load_methodology("1.0", tmp_path)
    (tmp_path / "v1.0.json").unlink()
    with pytest.raises(ValueError, match="missing"):
        methodology.load_methodology("1.0", tmp_path)


def test_methodology_reformatting_is_not_an_edit(tmp_path):
    data = json.loads((BENCH / "methodology" / "v1.0.json").read_text())
    (tmp_path / "v1.0.json").write_text(json.dumps(data, indent=7, sort_keys=True))
    assert methodology.load_methodology("1.0", tmp_path).iterations == 200


# ------------------------------------------------------------------------------------------------ timing
def test_time_host_counts_calls_and_units():
    calls = []
    out = timing.time_host(lambda: calls.append(1), 4, 10, inner=3)
    assert len(calls) == 4 + 10 * 3
    assert out.shape == (10,) and out.dtype == np.float64 and np.all(out > 0)


def test_time_host_measures_a_known_delay():
    out = timing.time_host(lambda: time.sleep(0.002), 0, 5)
    assert np.min(out) >= 2000.0  # microseconds; sleep never returns early
    assert np.median(out) < 200_000.0


def test_time_host_bad_arguments():
    with pytest.raises(TypeError, match="fn"):
        timing.time_host(3, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iters"):
        timing.time_host(lambda: None, 1, 0)
    with pytest.raises(ValueError, match="inner"):
        timing.time_host(lambda: None, 1, 1, inner=0)


def test_calibrate_inner_reaches_the_sample_length():
    inner = timing.calibrate_inner(lambda: time.sleep(0.0005), min_sample_us=2000)
    assert 1 <= inner <= 4  # 0.5 ms sleeps (a bit longer in practice): at most 4 calls make 2 ms
    assert timing.calibrate_inner(lambda: time.sleep(0.003), min_sample_us=1000) == 1
    assert timing.call_overhead_us(warmup=1, iters=5, inner=10).shape == (5,)


# ------------------------------------------------------------------------------------------------ fake NVML
class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """Just the pynvml functions the package calls; values are controllable by the test."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, *, power_mw=100_000, sm_clock=1980, sm_max=1980, energy=True, fail_init=False, count=1,
                 utilization=100):
        self.power_mw, self.sm_clock, self.sm_max = power_mw, sm_clock, sm_max
        self.utilization = utilization
        self.energy, self.fail_init, self.count = energy, fail_init, count
        self.inits = self.shutdowns = 0
        self.energy_mj = 1_000_000.0

    def nvmlInit(self):
        if self.fail_init:
            raise FakeNVMLError("Driver Not Loaded")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlSystemGetDriverVersion(self):
        return "560.35.03"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12060

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        return "GPU-0000"

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return (9, 0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=80 * 2**30, used=3 * 2**30, free=77 * 2**30)

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 700_000

    def nvmlDeviceGetClockInfo(self, h, which):
        return self.sm_clock if which == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, h, which):
        return self.sm_max if which == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPersistenceMode(self, h):
        return 1

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.utilization, memory=10)

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        raise FakeNVMLError("Not Supported")

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return 16

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.energy:
            raise FakeNVMLError("Not Supported")
        self.energy_mj += 500.0  # +0.5 J per read
        return self.energy_mj


def test_fake_nvml_only_uses_real_pynvml_names():
    # The fakes stand in for pynvml: a name the package calls that pynvml lacks would pass here and fail on a GPU.
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py (test extra)")
    used = [n for n in dir(FakeNVML) if n.startswith(("nvml", "NVML_"))]
    assert used and [n for n in used if not hasattr(pynvml, n)] == []
    assert (FakeNVML.NVML_CLOCK_SM, FakeNVML.NVML_CLOCK_MEM) == (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM)


class FakePsutil:
    def cpu_percent(self, interval=None):
        return 37.5

    def cpu_count(self, logical=True):
        return 8 if logical else 4

    def virtual_memory(self):
        return SimpleNamespace(total=64 * 2**30)

    def cpu_freq(self):
        return SimpleNamespace(max=3500.0)


# ------------------------------------------------------------------------------------------------ envinfo
def test_gpu_info_from_fake_nvml():
    fake = FakeNVML()
    g = envinfo.gpu_info(nvml=fake, smi_runner=None)
    assert g["available"] and g["source"] == "nvml" and g["cuda_driver_version"] == "12.6"
    d = g["devices"][0]
    assert d["name"] == "NVIDIA H100 80GB HBM3" and d["compute_capability"] == "9.0"
    assert d["power_limit_w"] == 700.0 and d["sm_clock_max_mhz"] == 1980 and d["persistence_mode"] is True
    assert d["pcie_gen"] is None and any("pcie_gen" in u for u in d["unsupported"]) and d["pcie_width"] == 16
    assert fake.inits == fake.shutdowns == 1


SMI_OUTPUT = "NVIDIA H200, GPU-abcd, 570.86.15, 9.0, 143771, 700.00, 345, 1980, 2619, 3201, Enabled, 5, 16\n"


def test_gpu_info_falls_back_to_nvidia_smi():
    g = envinfo.gpu_info(nvml=FakeNVML(fail_init=True), smi_runner=lambda: SMI_OUTPUT)
    assert g["available"] and g["source"] == "nvidia-smi" and "Driver Not Loaded" in g["nvml_reason"]
    d = g["devices"][0]
    assert (d["name"], d["compute_capability"], d["sm_clock_max_mhz"], d["pcie_gen"], d["persistence_mode"]) == (
        "NVIDIA H200", "9.0", 1980, 5, True)
    assert d["memory_total_bytes"] == 143771 * 2**20


def test_gpu_info_without_any_gpu_is_a_record_not_an_error():
    def no_smi():
        raise FileNotFoundError("nvidia-smi not found on PATH")

    g = envinfo.gpu_info(nvml=FakeNVML(fail_init=True), smi_runner=no_smi)
    assert g["available"] is False and "Driver Not Loaded" in g["reason"] and "nvidia-smi" in g["reason"]
    g2 = envinfo.gpu_info(nvml=None, smi_runner=lambda: "garbage line\n")
    assert g2["available"] is False and "fields" in g2["reason"]


def test_collect_environment_records_everything(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGELLM_GIT_COMMIT", raising=False)
    env = envinfo.collect_environment(tmp_path, nvml=None, smi_runner=None, psutil_module=FakePsutil())
    assert env["gpu"]["available"] is False and "disabled" in env["gpu"]["reason"]
    assert env["cpu"]["cores"] == 4 and env["cpu"]["ram_total_bytes"] == 64 * 2**30
    assert env["git"]["commit"] is None and env["git"]["reason"]  # tmp_path is no git repository
    assert env["edgellm_ext"]["version"] and env["python"]["version"] and env["timestamp_utc"].endswith("Z")
    assert isinstance(env["cuda_runtime"]["available"], bool)
    if not env["cuda_runtime"]["available"]:
        assert env["cuda_runtime"]["reason"]
    no_psutil = envinfo.collect_environment(None, nvml=None, smi_runner=None, psutil_module=None)
    assert no_psutil["cpu"]["cores"] is None and "psutil" in no_psutil["cpu"]["psutil_reason"]
    json.dumps(env)  # the record is JSON as it is


def test_git_commit_from_environment_for_a_copy_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLM_GIT_COMMIT", "0123abc")
    info = envinfo.git_info(tmp_path)
    assert info["commit"] == "0123abc" and info["dirty"] is None and "EDGELLM_GIT_COMMIT" in info["reason"]


def test_git_info_of_this_repository():
    repo = Path(__file__).resolve().parents[1]
    g = envinfo.git_info(repo)
    if g["reason"] is not None and "not a git repository" in g["reason"]:
        pytest.skip("tests run outside a git checkout")
    assert len(g["commit"]) == 40 and isinstance(g["dirty"], bool)


def test_machine_slug():
    gpu_env = {"gpu": {"available": True, "devices": [{"name": "NVIDIA H100 80GB HBM3"}]}}
    assert envinfo.machine_slug(gpu_env) == "nvidia-h100-80gb-hbm3"
    cpu_env = {"gpu": {"available": False, "devices": []}, "cpu": {"model": "Intel(R) Xeon(R) Processor"}}
    assert envinfo.machine_slug(cpu_env) == "cpu-intel-xeon-processor"


# ------------------------------------------------------------------------------------------------ power
def test_power_sampler_with_fake_nvml():
    fake = FakeNVML(power_mw=150_000)
    with power.PowerSampler(nvml=fake, psutil_module=FakePsutil(), interval_s=0.005) as s:
        time.sleep(0.05)
    r = s.result()
    g = r["gpu"]
    assert g["available"] and g["samples"] >= 2
    assert g["avg_power_w"] == pytest.approx(150.0) and g["peak_power_w"] == pytest.approx(150.0)
    assert g["energy_method"].startswith("nvml total-energy") and g["energy_j"] == pytest.approx(0.5)
    assert g["throttled"] is False and g["gpu_memory_used_peak_bytes"] == 3 * 2**30
    assert r["host"]["cpu_percent"] == 37.5 and r["duration_s"] >= 0.05
    assert fake.inits == fake.shutdowns == 1
    assert power.energy_per_token_j(r, 10) == pytest.approx(0.05)
    assert power.energy_per_token_j(r, 0) is None


def test_power_sampler_integrates_without_energy_counter_and_flags_throttling():
    fake = FakeNVML(power_mw=200_000, energy=False, sm_clock=1000, sm_max=1980)
    with power.PowerSampler(nvml=fake, psutil_module=None, interval_s=0.005) as s:
        time.sleep(0.04)
    r = s.result()
    g = r["gpu"]
    assert g["energy_method"].startswith("integrated")
    # constant 200 W over the sampled span (first to last sample, within the section)
    assert 0 < g["energy_j"] <= 200.0 * r["duration_s"] + 1e-9
    assert g["energy_j"] >= 200.0 * 0.03
    assert g["throttled"] is True and g["sm_clock_min_mhz"] == 1000
    assert r["host"]["available"] is False and "psutil" in r["host"]["reason"]


def test_power_sampler_does_not_call_an_idle_clock_throttling():
    # An idle GPU (utilisation 0%) at 345 MHz is saving power, not throttled; the same clock while busy is.
    for utilization, expected in ((0, False), (90, True)):
        fake = FakeNVML(sm_clock=345, sm_max=1980, utilization=utilization)
        with power.PowerSampler(nvml=fake, psutil_module=None, interval_s=0.005) as s:
            time.sleep(0.03)
        g = s.result()["gpu"]
        assert g["throttled"] is expected and "while busy" in g["throttle_rule"]
        assert g["sm_clock_min_mhz"] == 345


def test_power_sampler_without_nvml_says_why():
    with power.PowerSampler(nvml=None, psutil_module=None) as s:
        pass
    r = s.result()
    assert r["gpu"] == {"available": False, "reason": "NVML disabled by the caller"}
    with power.PowerSampler(nvml=FakeNVML(fail_init=True), psutil_module=None) as s2:
        pass
    assert "Driver Not Loaded" in s2.result()["gpu"]["reason"]
    with pytest.raises(RuntimeError, match="single-use"):
        with s2:
            pass
    with pytest.raises(ValueError, match="interval_s"):
        power.PowerSampler(interval_s=0)


# ------------------------------------------------------------------------------------------------ results
def test_measurement_labels_and_stats():
    m = results.measurement(name="x", kind="host", engine="numpy", metric="latency", unit="us",
                            samples=np.array([1.0, 2.0, 3.0], dtype=np.float32), params={"n": np.int64(3)})
    assert m["better"] == "lower" and m["stats"]["median"] == 2.0 and m["params"] == {"n": 3}
    assert isinstance(m["samples"][0], float)
    rate = results.measurement(name="r", kind="end-to-end", engine="e", metric="tok_s", unit="tok/s", samples=[1])
    assert rate["better"] == "higher"
    with pytest.raises(ValueError, match="kind"):
        results.measurement(name="x", kind="kernel", engine="e", metric="m", unit="us", samples=[1])


def test_target_and_comparison_items():
    t = results.target(target="dot", threshold=1.0, unit="us", measured=0.5, status="measured")
    assert t["pass"] is True
    assert results.target(target="q", threshold=2.0, unit="us", measured=None, status="not measured")["pass"] is None
    a = results.measurement(name="a", kind="host", engine="a", metric="latency", unit="us", samples=[2.0, 2.1, 1.9])
    b = results.measurement(name="b", kind="host", engine="b", metric="latency", unit="us", samples=[1.0, 1.1, 0.9])
    c = results.comparison(name="a/b", a=a, b=b)
    assert c["ratio"] == pytest.approx(2.0) and c["ratio_low"] <= 2.0 <= c["ratio_high"]


def test_writer_is_incremental_and_atomic(tmp_path):
    path = tmp_path / "out" / "results.json"
    w = results.ResultsWriter(path, {"id": "r"}, {"gpu": {}})
    section = w.start_section("cpu", "host", "t0")
    m = results.measurement(name="x", kind="host", engine="e", metric="latency", unit="us", samples=[1, 2])
    w.add_item(section, m)
    on_disk = json.loads(path.read_text())
    assert on_disk["sections"][0]["measurements"][0]["name"] == "x"
    assert on_disk["sections"][0]["status"] == "running"
    with pytest.raises(ValueError, match="expected a dict"):
        w.add_item(section, {"name": "no type"})
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------------ run.py
def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_quick_cpu_run_validates_and_reports(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the results schema (test extra)")
    del jsonschema
    pytest.importorskip("matplotlib", reason="charts need matplotlib (test extra)")
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--suite", "cpu", "--quick", "--out", str(out),
                           "--no-nvml"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    assert results.validate_document(doc, SCHEMA) == []
    run = doc["run"]
    assert run["status"] == "complete" and run["methodology"]["version"] == "1.0" and run["methodology"]["quick"]
    assert "--suite cpu" in run["command_line"] and run["git"].keys() >= {"commit", "dirty"}
    assert doc["environment"]["gpu"]["available"] is False
    (section,) = doc["sections"]
    assert section["status"] == "ok" and section["kind"] == "host"
    assert {m["kind"] for m in section["measurements"]} == {"host"}
    engines = {m["engine"] for m in section["measurements"]}
    assert "numpy" in engines and "edgellm-scalar" in engines
    assert section["comparisons"] and all(c["ratio"] > 0 for c in section["comparisons"])
    targets = {t["target"]: t for t in section["targets"]}
    assert targets["dot product: 384 elements"]["measured"] is not None
    # The seed's seven targets: every one exists; those whose parts are always built are measured. Tokenization
    # needs the SmolLM2 GGUF and HF tokenizers (test extra); without them the row must say why, not pass.
    seed_rows = ["tokenization: 100 characters", "Q4_0 dequantization: 1 block (32 values)",
                 "dot product: 384 elements", "matrix-vector: 384x384", "layer norm: 384 elements",
                 "KV cache access", "arena allocation: 1 KiB"]
    for name in seed_rows:
        row = targets[name]
        if name == "tokenization: 100 characters" and row["measured"] is None:
            assert row["status"].startswith("not measured: ") and row["pass"] is None
            continue
        if name == "Q4_0 dequantization: 1 block (32 values)" and row["measured"] is None:
            assert "gguf" in row["status"] and row["pass"] is None
            continue
        assert row["measured"] is not None and row["measured"] > 0 and row["pass"] in (True, False), row
        assert "kernel not in this build" not in row["status"]
    # Issue 3's ratio targets (Q4_0/Q8_0 matvec vs numpy f32 at 2048x2048, ternary LUT vs decode at K = 2048).
    ratio_rows = [t for t in section["targets"] if t["unit"] == "ratio"]
    for prefix in ("Q4_0 matvec", "Q8_0 matvec", "ternary lut_int8 LUT faster than decode"):
        rows = [t for t in ratio_rows if t["target"].startswith(prefix) and "2048x2048" in t["target"]]
        assert rows and all(t["measured"] > 0 and t["pass"] in (True, False) for t in rows), prefix
    names = {m["name"] for m in section["measurements"]}
    assert any(n.startswith("q4_0 matvec 2048x2048 x q8_0 (1 thr)") for n in names)
    assert any(n.startswith("ternary 2048x2048 decode") for n in names)
    assert {"arena allocate 1 KiB + reset [edgellm]", "arena allocate 1 KiB + reset [numpy]"} <= names
    comparisons = {c["name"] for c in section["comparisons"]}
    assert any(c.startswith("q4_0 matvec 2048x2048") and "/ numpy f32 matvec" in c for c in comparisons)
    report = (run_dir / "report.md").read_text()
    assert "## cpu (host): ok" in report and "QUICK" in report and "| dot 384 [numpy] |" in report
    dist = run_dir / "charts" / "dist_cpu.png"
    assert _png_size(dist) == (960, 540)
    assert _png_size(run_dir / "charts" / "ratios_cpu.png") == (960, 540)
    assert "dist_cpu.png" in report


def _tmp_bench(tmp_path: Path, suites: dict[str, str]) -> Path:
    bench = tmp_path / "bench"
    shutil.copytree(BENCH / "methodology", bench / "methodology")
    (bench / "suites").mkdir(parents=True)
    for name, body in suites.items():
        (bench / "suites" / f"{name}.py").write_text(textwrap.dedent(body))
    return bench


_OK_SUITE = """
    from edgellm_ext import results as R
    NAME = "good"
    KIND = "host"
    def available(ctx):
        return True, ""
    def run(ctx):
        yield R.measurement(name="m", kind="host", engine="e", metric="latency", unit="us",
                            samples=[10.0 * SCALE + i * 0.01 for i in range(ctx.methodology.iterations)])
    SCALE = 1.0
"""


def test_faults_are_recorded_and_the_run_goes_on(tmp_path, capsys):
    bench = _tmp_bench(tmp_path, {
        "good": _OK_SUITE,
        "broken": """
            from edgellm_ext import results as R
            NAME = "broken"
            KIND = "host"
            def available(ctx):
                return True, ""
            def run(ctx):
                yield R.measurement(name="before", kind="host", engine="e", metric="latency", unit="us", samples=[1.0])
                raise RuntimeError("kernel exploded\\nsecond line")
        """,
        "absent": """
            NAME = "absent"
            KIND = "kernel-only"
            def available(ctx):
                return False, "no CUDA device"
            def run(ctx):
                raise AssertionError("must not run")
        """,
        "skipper": """
            from edgellm_ext import results as R
            from edgellm_ext.harness import SuiteSkip
            NAME = "skipper"
            KIND = "end-to-end"
            def available(ctx):
                return True, ""
            def run(ctx):
                yield R.skip("model-a", "model 'a' missing")
                raise SuiteSkip("server went away")
        """,
        "noimport": "import module_that_does_not_exist\n",
    })
    out = tmp_path / "out"
    code = harness.main(["--quick", "--out", str(out), "--no-nvml", "--no-report", "--save-baseline", "x",
                         "--baselines-dir", str(tmp_path / "baselines")], bench)
    assert code == harness.EXIT_SUITE_ERROR
    err = capsys.readouterr().err
    assert "baseline 'x' not saved" in err and not (tmp_path / "baselines" / "x.json").exists()
    assert "[broken] error: RuntimeError: kernel exploded second line" in err
    assert "[absent] skipped: no CUDA device" in err
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    sections = {s["suite"]: s for s in doc["sections"]}
    assert sections["good"]["status"] == "ok"
    assert sections["broken"]["status"] == "error" and sections["broken"]["measurements"][0]["name"] == "before"
    assert sections["absent"]["status"] == "skipped" and sections["absent"]["reason"] == "no CUDA device"
    assert sections["skipper"]["status"] == "skipped" and sections["skipper"]["reason"] == "server went away"
    assert sections["skipper"]["skipped"] == [{"type": "skip", "name": "model-a", "reason": "model 'a' missing"}]
    assert sections["noimport"]["status"] == "skipped" and "ModuleNotFoundError" in sections["noimport"]["reason"]
    jsonschema = pytest.importorskip("jsonschema")
    del jsonschema
    assert results.validate_document(doc, SCHEMA) == []


def test_interrupted_run_keeps_finished_sections(tmp_path):
    bench = _tmp_bench(tmp_path, {"a_good": _OK_SUITE, "b_stop": """
        from edgellm_ext import results as R
        NAME = "stop"
        KIND = "host"
        def available(ctx):
            return True, ""
        def run(ctx):
            yield R.note("started")
            raise KeyboardInterrupt
    """})
    out = tmp_path / "out"
    code = harness.main(["--quick", "--out", str(out), "--no-nvml", "--suite", "good,stop"], bench)
    assert code == harness.EXIT_INTERRUPTED
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["run"]["status"] == "interrupted"
    good, stop = doc["sections"]
    assert good["status"] == "ok" and good["measurements"]
    assert stop["status"] == "interrupted" and stop["notes"] == ["started"]


def test_unknown_names_list_the_valid_ones(tmp_path, capsys):
    bench = _tmp_bench(tmp_path, {"good": _OK_SUITE})
    assert harness.main(["--suite", "nope"], bench) == harness.EXIT_USAGE
    assert "unknown suite(s) nope; valid suites: good" in capsys.readouterr().err
    assert harness.main(["--model", "GPT-5"], bench) == harness.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown model 'GPT-5'" in err and "SmolLM2-135M" in err
    assert harness.main(["--methodology", "0.1"], bench) == harness.EXIT_USAGE
    assert "released versions: 1.0" in capsys.readouterr().err
    assert harness.main(["--compare", "nothing", "--baselines-dir", str(tmp_path)], bench) == harness.EXIT_USAGE
    assert "no baseline 'nothing'" in capsys.readouterr().err
    assert harness.main(["--list"], bench) == harness.EXIT_OK
    assert "good" in capsys.readouterr().out


def test_baseline_save_and_compare(tmp_path, capsys):
    bench = _tmp_bench(tmp_path, {"good": _OK_SUITE})
    base_dir = tmp_path / "baselines"
    common = ["--quick", "--out", str(tmp_path / "out"), "--no-nvml", "--no-report", "--baselines-dir", str(base_dir)]
    assert harness.main([*common, "--save-baseline", "b1"], bench) == harness.EXIT_OK
    saved = json.loads((base_dir / "b1.json").read_text())
    assert saved["run"]["status"] == "complete"
    # frozen: the same name is refused
    assert harness.main([*common, "--save-baseline", "b1"], bench) == harness.EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    # same code, same numbers: no regression
    assert harness.main([*common, "--compare", "b1"], bench) == harness.EXIT_OK
    # a baseline twice as fast makes this run a 100% regression
    for section in saved["sections"]:
        for m in section["measurements"]:
            m["samples"] = [x / 2 for x in m["samples"]]
    (base_dir / "fast.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert harness.main([*common, "--compare", "fast"], bench) == harness.EXIT_REGRESSION
    out = capsys.readouterr().out
    assert "REGRESSIONS beyond 10%" in out and "m [latency]: +100.0%" in out
    # a looser threshold accepts it
    assert harness.main([*common, "--compare", "fast", "--threshold", "1.5"], bench) == harness.EXIT_OK


def _synthetic_doc() -> dict:
    rng = np.random.default_rng(3)
    kernel = [results.measurement(name=f"fa2_decode S={s} [edgellm]", kind="kernel-only", engine=e,
                                  metric="latency", unit="us", model="SmolLM2-135M",
                                  samples=rng.normal(5 + s / 500 * f, 0.1, 50), params={"cache_len": s})
              for s in (64, 256, 1024, 4096) for e, f in (("edgellm-fa2", 1.0), ("torch-sdpa", 1.5))]
    e2e = [results.measurement(name=f"{e} decode", kind="end-to-end", engine=e, metric="decode_tok_s",
                               unit="tok/s", model="SmolLM2-135M", samples=rng.normal(r, 5, 20))
           for e, r in (("ollama", 400.0), ("openai-compat", 900.0))]
    section = lambda suite, kind, ms: {  # noqa: E731
        "suite": suite, "kind": kind, "status": "ok", "reason": None, "started_utc": "t", "duration_s": 1.0,
        "power": None, "measurements": ms, "comparisons": [], "targets": [], "skipped": [], "notes": []}
    return {"schema_version": results.SCHEMA_VERSION,
            "run": {"id": "synthetic", "status": "complete", "methodology": {"version": "1.0", "quick": False}},
            "environment": {"gpu": {"available": False, "reason": "test"}},
            "sections": [section("kernels", "kernel-only", kernel), section("ollama", "end-to-end", e2e)]}


def test_report_draws_cache_length_and_engine_charts(tmp_path):
    pytest.importorskip("matplotlib", reason="charts need matplotlib (test extra)")
    from edgellm_ext.report import CHART_SIZE_PX, write_report

    paths = write_report(_synthetic_doc(), tmp_path)
    names = {p.name for p in paths["charts"]}
    assert {"latency_vs_cache_len.png", "engine_comparison.png", "dist_kernels.png"} <= names
    for p in paths["charts"]:
        assert _png_size(p) == CHART_SIZE_PX
    report = paths["report"].read_text()
    assert "## kernels (kernel-only): ok" in report and "![latency_vs_cache_len.png]" in report


def test_report_without_matplotlib_says_why(tmp_path, monkeypatch):
    from edgellm_ext.report import write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    paths = write_report(_synthetic_doc(), tmp_path)
    assert paths["charts"] == [] and "matplotlib is not installed" in paths["charts_skipped"]
    assert "Charts skipped: matplotlib is not installed" in paths["report"].read_text()


def test_api_key_never_reaches_the_results(tmp_path):
    bench = _tmp_bench(tmp_path, {"good": _OK_SUITE})
    out = tmp_path / "out"
    assert harness.main(["--quick", "--out", str(out), "--no-nvml", "--no-report", "--api-key", "sk-secret",
                         "--api-key=sk-other"], bench) == harness.EXIT_OK
    (run_dir,) = list(out.iterdir())
    text = (run_dir / "results.json").read_text()
    assert "sk-secret" not in text and "sk-other" not in text and "<redacted>" in text


def test_git_commit_from_environment_beats_a_dirty_stale_copy(tmp_path, monkeypatch):
    # The GPU machine's copy of the tree carries the session's first commit and shows every later change as dirty:
    # the commit the caller names wins there, and git's view is kept in the reason.
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "x"],
                   check=True)
    (tmp_path / "f.txt").write_text("b")  # dirty
    monkeypatch.setenv("EDGELLM_GIT_COMMIT", "0123abc")
    info = envinfo.git_info(tmp_path)
    assert info["commit"] == "0123abc" and "dirty" in info["reason"] and "EDGELLM_GIT_COMMIT" in info["reason"]
    (tmp_path / "f.txt").write_text("a")  # clean: git's own answer stands
    assert envinfo.git_info(tmp_path)["commit"] != "0123abc"
