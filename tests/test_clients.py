"""Engine clients against loopback servers that speak the documented wire formats.

Each server is a ThreadingHTTPServer on 127.0.0.1 with a free port, started by a fixture and shut down after the
test; every handler writes a bounded number of lines with sleeps of a few ms, so nothing here can hang: the
clients run with timeouts of a second or two.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("requests", reason="the engine clients need requests (test extra)")

from edgellm_ext import harness  # noqa: E402
from edgellm_ext.clients import (  # noqa: E402
    EngineHTTPError,
    EngineTimeout,
    EngineUnreachable,
    ModelMissing,
    OllamaClient,
    OpenAICompatClient,
    StreamError,
)

BENCH = Path(__file__).resolve().parents[1] / "bench"
TOKEN_DELAY_S = 0.003


class _Handler(BaseHTTPRequestHandler):
    # Real servers (Go's net/http, llama.cpp, uvicorn) send small writes at once; with Nagle's algorithm on, the
    # kernel would hold each line until the previous one is acknowledged and the timings would be the network's.
    disable_nagle_algorithm = True
    routes: dict[tuple[str, str], Callable[["_Handler", Any], None]] = {}

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _dispatch(self, method: str) -> None:
        body = None
        if method == "POST":
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
        self.server.requests.append((method, self.path, body))  # type: ignore[attr-defined]
        route = self.server.routes.get((method, self.path))  # type: ignore[attr-defined]
        if route is None:
            self.send_json(404, {"error": "not found"})
            return
        route(self, body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, content_type: str) -> None:
        # HTTP/1.0 server: no Content-Length, the body ends when the connection closes.
        # HTTP/1.1 server (_ChunkedHandler): chunked transfer encoding, as Ollama, llama.cpp and vLLM send.
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    chunked = False

    def write_line(self, text: str, delay_s: float = TOKEN_DELAY_S) -> None:
        data = text.encode() + b"\n"
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()
        if delay_s:
            time.sleep(delay_s)

    def end_stream(self) -> None:
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()


class _ChunkedHandler(_Handler):
    protocol_version = "HTTP/1.1"
    chunked = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the timeout tests) makes the handler's next write fail: expected, not an error.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(params=["close-delimited", "chunked"])
def server(request):
    """Start a loopback server (each test runs with both body framings); tests set ``srv.routes``. Shut down
    after the test."""
    srv = _Server(("127.0.0.1", 0), _ChunkedHandler if request.param == "chunked" else _Handler)
    srv.routes = {}
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ Ollama
OLLAMA_FINAL = {"model": "smollm2:135m", "created_at": "2026-11-21T00:00:00Z", "response": "", "done": True,
                "done_reason": "length", "context": [1, 2, 3], "total_duration": 123456789, "load_duration": 2345678,
                "prompt_eval_count": 7, "prompt_eval_duration": 3456789, "eval_count": 5, "eval_duration": 45678901}


def ollama_tags(models: list[str]):
    def route(h: _Handler, _body: Any) -> None:
        h.send_json(200, {"models": [{"name": m, "model": m, "size": 1} for m in models]})
    return route


def ollama_generate(tokens: list[str], *, final: dict | None = OLLAMA_FINAL, extra_line: str | None = None,
                    delay_s: float = TOKEN_DELAY_S):
    def route(h: _Handler, _body: Any) -> None:
        h.start_stream("application/x-ndjson")
        for t in tokens:
            h.write_line(json.dumps({"model": "m", "response": t, "done": False}), delay_s)
        if extra_line is not None:
            h.write_line(extra_line)
        if final is not None:
            h.write_line(json.dumps(final))
        h.end_stream()
    return route


def test_ollama_generate_streams_and_times(server):
    server.routes = {("GET", "/api/tags"): ollama_tags(["smollm2:135m", "qwen2.5:0.5b"]),
                     ("POST", "/api/generate"): ollama_generate(["Hel", "lo", ",", " wor", "ld"])}
    with OllamaClient(server.url, timeout_s=2) as c:
        assert c.list_models() == ["smollm2:135m", "qwen2.5:0.5b"]
        assert c.has_model("smollm2:135m") and not c.has_model("llama3.2:1b")
        g = c.generate("smollm2:135m", "Hello", num_predict=5)
    assert g.text == "Hello, world" and g.n_chunks == 5 and g.finish_reason == "length"
    # client timing: the server sleeps TOKEN_DELAY_S after each token line, so the last token cannot arrive
    # earlier than 4 delays after the request; tokens read as they arrive have distinct arrival times (reading
    # the body in one piece would stamp them all alike). Per-gap bounds would be flaky on a loaded 2-core box.
    assert g.ttft_ms > 0 and len(g.itl_ms) == 4
    assert (g.chunk_times_ns[-1] - g.t_request_ns) / 1e9 >= 4 * TOKEN_DELAY_S
    assert len(set(g.chunk_times_ns)) >= 3
    assert g.client_decode_tok_s > 0
    # server figures exactly as given (ns), the token ids left out
    expected = {k: v for k, v in OLLAMA_FINAL.items() if k not in ("context", "response", "done")}
    assert g.server == expected and g.completion_tokens == 5 and g.prompt_tokens == 7
    method, path, body = server.requests[-1]
    assert body == {"model": "smollm2:135m", "prompt": "Hello", "stream": True,
                    "options": {"temperature": 0.0, "num_predict": 5, "seed": 0}}


def test_ollama_model_missing(server):
    def missing(h: _Handler, _body: Any) -> None:
        h.send_json(404, {"error": "model \"llama3.2:1b\" not found, try pulling it first"})
    server.routes = {("POST", "/api/generate"): missing}
    with OllamaClient(server.url, timeout_s=2) as c, pytest.raises(ModelMissing) as e:
        c.generate("llama3.2:1b", "x", num_predict=3)
    assert "ollama pull llama3.2:1b" in str(e.value) and "\n" not in str(e.value)


def test_ollama_http_error(server):
    def boom(h: _Handler, _body: Any) -> None:
        h.send_json(500, {"error": "out of memory"})
    server.routes = {("POST", "/api/generate"): boom, ("GET", "/api/tags"): boom}
    with OllamaClient(server.url, timeout_s=2) as c:
        with pytest.raises(EngineHTTPError, match="HTTP 500: out of memory") as e:
            c.generate("m", "x", num_predict=3)
        assert e.value.status == 500
        with pytest.raises(EngineHTTPError, match="/api/tags -> HTTP 500"):
            c.list_models()


def test_ollama_truncated_stream(server):
    server.routes = {("POST", "/api/generate"): ollama_generate(["a", "b"], final=None)}
    with OllamaClient(server.url, timeout_s=2) as c, pytest.raises(StreamError, match="without its final message"):
        c.generate("m", "x", num_predict=3)


def test_ollama_malformed_stream(server):
    server.routes = {("POST", "/api/generate"): ollama_generate(["a"], extra_line="{not json")}
    with OllamaClient(server.url, timeout_s=2) as c, pytest.raises(StreamError, match="malformed stream line 2"):
        c.generate("m", "x", num_predict=3)


def test_ollama_error_mid_stream(server):
    server.routes = {("POST", "/api/generate"): ollama_generate(["a"], extra_line='{"error": "runner crashed"}')}
    with OllamaClient(server.url, timeout_s=2) as c, pytest.raises(EngineHTTPError, match="runner crashed"):
        c.generate("m", "x", num_predict=3)


def test_ollama_stalled_stream_times_out(server):
    server.routes = {("POST", "/api/generate"): ollama_generate(["a", "b"], delay_s=0.6)}
    t0 = time.perf_counter()
    with OllamaClient(server.url, timeout_s=0.3) as c, pytest.raises(EngineTimeout, match="0.3 s"):
        c.generate("m", "x", num_predict=3)
    assert time.perf_counter() - t0 < 2.0


def test_ollama_unreachable():
    with OllamaClient(f"http://127.0.0.1:{_free_port()}", timeout_s=1) as c:
        with pytest.raises(EngineUnreachable, match="connection refused"):
            c.list_models()
        with pytest.raises(EngineUnreachable):
            c.generate("m", "x", num_predict=1)


def test_ollama_bad_tags_answer(server):
    server.routes = {("GET", "/api/tags"): lambda h, b: h.send_json(200, {"unexpected": True})}
    with OllamaClient(server.url, timeout_s=2) as c, pytest.raises(StreamError, match="not {'models'"):
        c.list_models()


# ------------------------------------------------------------------------------------------------ OpenAI
def openai_models(ids: list[str]):
    def route(h: _Handler, _body: Any) -> None:
        h.send_json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
    return route


def openai_completions(pieces: list[str], *, done: bool = True, usage: bool = True, timings: bool = True,
                       bad_event: str | None = None):
    def route(h: _Handler, _body: Any) -> None:
        h.start_stream("text/event-stream")
        for i, p in enumerate(pieces):
            finish = "length" if i == len(pieces) - 1 else None
            h.write_line("data: " + json.dumps({"id": "c", "object": "text_completion", "choices": [
                {"text": p, "index": 0, "finish_reason": finish}]}), 0)
            h.write_line("")
        if bad_event is not None:
            h.write_line("data: " + bad_event, 0)
            h.write_line("")
        if usage or timings:
            last: dict[str, Any] = {"id": "c", "choices": []}
            if usage:
                last["usage"] = {"prompt_tokens": 4, "completion_tokens": len(pieces), "total_tokens": 4 + len(pieces)}
            if timings:
                last["timings"] = {"predicted_per_second": 812.5, "prompt_per_second": 2000.0, "predicted_n": 3}
            h.write_line("data: " + json.dumps(last), 0)
            h.write_line("")
        if done:
            h.write_line("data: [DONE]", 0)
            h.write_line("")
        h.end_stream()
    return route


def test_openai_generate_streams_usage_and_timings(server):
    server.routes = {("GET", "/v1/models"): openai_models(["smollm2"]),
                     ("POST", "/v1/completions"): openai_completions(["A", "B", "C"])}
    with OpenAICompatClient(server.url + "/v1", timeout_s=2, api_key="k") as c:
        assert c.list_models() == ["smollm2"]
        g = c.generate("smollm2", "Hi", max_tokens=3)
    assert g.text == "ABC" and g.n_chunks == 3 and g.finish_reason == "length"
    assert g.completion_tokens == 3 and g.prompt_tokens == 4
    assert g.server["timings"]["predicted_per_second"] == 812.5
    _, path, body = server.requests[-1]
    assert path == "/v1/completions" and body["stream"] is True and body["max_tokens"] == 3
    assert body["temperature"] == 0.0 and body["stream_options"] == {"include_usage": True}


def test_openai_truncated_stream(server):
    server.routes = {("POST", "/v1/completions"): openai_completions(["A", "B"], done=False)}
    with OpenAICompatClient(server.url, timeout_s=2) as c, \
            pytest.raises(StreamError, match=r"without 'data: \[DONE\]'"):
        c.generate("m", "x", max_tokens=2)


def test_openai_malformed_event(server):
    server.routes = {("POST", "/v1/completions"): openai_completions(["A"], bad_event="{oops")}
    with OpenAICompatClient(server.url, timeout_s=2) as c, pytest.raises(StreamError, match="malformed event 2"):
        c.generate("m", "x", max_tokens=2)


def test_openai_error_event_and_http_errors(server):
    server.routes = {("POST", "/v1/completions"): openai_completions(
        ["A"], bad_event=json.dumps({"error": {"message": "context overflow", "code": 400}}))}
    with OpenAICompatClient(server.url, timeout_s=2) as c, pytest.raises(EngineHTTPError, match="context overflow"):
        c.generate("m", "x", max_tokens=2)

    def missing(h: _Handler, _body: Any) -> None:
        h.send_json(404, {"error": {"message": "The model `gpt-x` does not exist.", "type": "NotFoundError"}})
    server.routes = {("POST", "/v1/completions"): missing, ("GET", "/v1/models"): lambda h, b: h.send_json(
        401, {"error": {"message": "invalid api key"}})}
    with OpenAICompatClient(server.url, timeout_s=2) as c:
        with pytest.raises(ModelMissing, match="does not exist"):
            c.generate("gpt-x", "x", max_tokens=2)
        with pytest.raises(EngineHTTPError, match="HTTP 401: invalid api key"):
            c.list_models()


def test_openai_not_sse(server):
    def plain(h: _Handler, _body: Any) -> None:
        h.start_stream("text/plain")
        h.write_line("hello there")
        h.end_stream()
    server.routes = {("POST", "/v1/completions"): plain}
    with OpenAICompatClient(server.url, timeout_s=2) as c, pytest.raises(StreamError, match="not a Server-Sent"):
        c.generate("m", "x", max_tokens=2)


def test_openai_unreachable():
    with OpenAICompatClient(f"127.0.0.1:{_free_port()}", timeout_s=1) as c, pytest.raises(EngineUnreachable):
        c.list_models()


# ------------------------------------------------------------------------------------------------ suites
def test_ollama_suite_end_to_end_against_the_fake_server(server, tmp_path, capsys):
    server.routes = {("GET", "/api/tags"): ollama_tags(["smollm2:135m"]),
                     ("POST", "/api/generate"): ollama_generate(["a", "b", "c", "d", "e"])}
    out = tmp_path / "out"
    code = harness.main(["--suite", "ollama", "--quick", "--model", "SmolLM2-135M,Qwen2.5-0.5B", "--out", str(out),
                         "--no-nvml", "--no-report", "--ollama-url", server.url, "--request-timeout", "5"], BENCH)
    assert code == harness.EXIT_OK, capsys.readouterr()
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    (section,) = doc["sections"]
    assert section["status"] == "ok" and section["kind"] == "end-to-end"
    ms = {m["metric"]: m for m in section["measurements"]}
    assert {m["kind"] for m in ms.values()} == {"end-to-end"}
    assert set(ms) >= {"ttft", "itl", "decode_tok_s", "server_decode_tok_s", "server_prompt_tok_s",
                       "load_duration", "total_duration"}
    quick_runs = 3
    assert len(ms["ttft"]["samples"]) == quick_runs and len(ms["itl"]["samples"]) == quick_runs * 4
    # server-side figures as given: eval_count / eval_duration, load_duration in ns unchanged
    assert ms["server_decode_tok_s"]["samples"] == [pytest.approx(5 / 0.045678901)] * quick_runs
    assert ms["load_duration"]["samples"] == [2345678.0] * quick_runs and ms["load_duration"]["unit"] == "ns"
    assert ms["ttft"]["extra"]["runs"][0]["server"]["eval_duration"] == 45678901
    prompts = [b["prompt"] for (meth, path, b) in server.requests if path == "/api/generate"]
    assert len(prompts) == 1 + quick_runs
    assert prompts[1:] == ["Hello", "What is 2+2?", "Explain machine learning briefly."]
    # the model the server lacks is skipped with the pull command, the rest measured
    skipped = section["skipped"][0]
    assert skipped["name"] == "Qwen2.5-0.5B" and "ollama pull qwen2.5:0.5b" in skipped["reason"]
    jsonschema = pytest.importorskip("jsonschema", reason="schema validation (test extra)")
    del jsonschema
    from edgellm_ext.results import validate_document

    assert validate_document(json.loads((run_dir / "results.json").read_text()),
                             BENCH / "schema" / "results-v1.json") == []


def test_openai_suite_truncation_is_a_skip_not_a_crash(server, tmp_path):
    server.routes = {("GET", "/v1/models"): openai_models(["smol"]),
                     ("POST", "/v1/completions"): openai_completions(["A", "B"], done=False)}
    out = tmp_path / "out"
    code = harness.main(["--suite", "openai", "--quick", "--out", str(out), "--no-nvml", "--no-report",
                         "--openai-url", server.url, "--request-timeout", "5"], BENCH)
    assert code == harness.EXIT_OK
    (run_dir,) = list(out.iterdir())
    (section,) = json.loads((run_dir / "results.json").read_text())["sections"]
    assert section["status"] == "ok" and not section["measurements"]
    assert "truncated" in section["skipped"][0]["reason"]


def test_engine_suites_skip_when_no_server(tmp_path, capsys):
    out = tmp_path / "out"
    code = harness.main(["--suite", "ollama,openai", "--quick", "--out", str(out), "--no-nvml", "--no-report",
                         "--ollama-url", f"http://127.0.0.1:{_free_port()}",
                         "--openai-url", f"http://127.0.0.1:{_free_port()}"], BENCH)
    assert code == harness.EXIT_OK
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("[ollama] skipped: Ollama server not usable") and "connection refused" in line
               for line in err)
    (run_dir,) = list(out.iterdir())
    sections = json.loads((run_dir / "results.json").read_text())["sections"]
    assert [s["status"] for s in sections] == ["skipped", "skipped"]
