"""Client for Ollama's HTTP API, as documented in Ollama's docs/api.md.

- ``GET /api/tags`` -> ``{"models": [{"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", ...}]}``
- ``POST /api/generate`` with ``"stream": true`` -> NDJSON: one object per line, ``{"response": "<text>",
  "done": false}`` per token, then a final ``{"done": true, "done_reason": "stop" | "length",
  "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
  "eval_duration", "context": [...]}`` (durations in nanoseconds). An error is ``{"error": "..."}``, with an HTTP
  error status before streaming starts (404 for a missing model) or as a line mid-stream.

The final message's figures are kept exactly as given (nanoseconds), ``context`` excepted (the token ids).
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from .common import (
    EngineError,
    EngineHTTPError,
    GenerationResult,
    ModelMissing,
    StreamError,
    http_session,
    iter_lines_timed,
    one_line,
    translate_request_error,
)

__all__ = ["OllamaClient"]

SERVER_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                 "eval_duration", "done_reason", "model", "created_at")


class OllamaClient:
    """Minimal streaming client. ``timeout_s`` bounds connecting, each wait for the next chunk, and (as a deadline)
    a whole generation."""

    def __init__(self, base_url: str = "http://127.0.0.1:11434", *, timeout_s: float = 300.0,
                 connect_timeout_s: float = 5.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            base_url = "http://" + base_url  # OLLAMA_HOST is often given as host:port
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self._session = http_session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "OllamaClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error_text(self, response: Any) -> str:
        try:
            body = response.json()
            if isinstance(body, dict) and "error" in body:
                return one_line(str(body["error"]))
        except ValueError:
            pass
        return one_line(response.text or response.reason or "")

    def list_models(self) -> list[str]:
        """Names of the models the server has (``/api/tags``)."""
        what = f"Ollama at {self.base_url}"
        try:
            r = self._session.get(f"{self.base_url}/api/tags", timeout=(self.connect_timeout_s, self.timeout_s))
        except Exception as e:
            raise translate_request_error(e, what, self.timeout_s) from None
        if r.status_code != 200:
            raise EngineHTTPError(f"{what}: GET /api/tags -> HTTP {r.status_code}: {self._error_text(r)}",
                                  r.status_code)
        try:
            body = r.json()
            return [str(m.get("name") or m.get("model")) for m in body["models"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StreamError(f"{what}: /api/tags answer is not {{'models': [...]}}: {one_line(r.text, 120)}") from None

    def has_model(self, name: str, available: Optional[list[str]] = None) -> bool:
        """True if ``name`` is on the server (``name`` without a tag matches ``name:latest``)."""
        names = self.list_models() if available is None else available
        wanted = {name, name if ":" in name else f"{name}:latest"}
        return any(n in wanted for n in names)

    def generate(self, model: str, prompt: str, *, num_predict: int, temperature: float = 0.0,
                 seed: Optional[int] = 0) -> GenerationResult:
        """One streamed ``/api/generate`` call, timed on the client."""
        what = f"Ollama {model} at {self.base_url}"
        options: dict[str, Any] = {"temperature": temperature, "num_predict": int(num_predict)}
        if seed is not None:
            options["seed"] = int(seed)
        payload = {"model": model, "prompt": prompt, "stream": True, "options": options}
        t_request = time.perf_counter_ns()
        deadline = t_request + int(self.timeout_s * 1e9)
        try:
            r = self._session.post(f"{self.base_url}/api/generate", json=payload, stream=True,
                                   timeout=(self.connect_timeout_s, self.timeout_s))
        except Exception as e:
            raise translate_request_error(e, what, self.timeout_s) from None
        with r:
            if r.status_code == 404:
                raise ModelMissing(f"{what}: model not found ({self._error_text(r)}); run: ollama pull {model}")
            if r.status_code != 200:
                raise EngineHTTPError(f"{what}: HTTP {r.status_code}: {self._error_text(r)}", r.status_code)
            text: list[str] = []
            times: list[int] = []
            final: Optional[dict[str, Any]] = None
            n_lines = 0
            try:
                for line, t in iter_lines_timed(r, deadline, what, self.timeout_s):
                    if not line.strip():
                        continue
                    n_lines += 1
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        shown = one_line(line.decode("utf-8", "replace"), 80)
                        raise StreamError(f"{what}: malformed stream line {n_lines}: {shown!r}") from None
                    if not isinstance(msg, dict):
                        raise StreamError(f"{what}: stream line {n_lines} is not a JSON object")
                    if "error" in msg:
                        raise EngineHTTPError(f"{what}: error in stream: {one_line(str(msg['error']))}")
                    piece = msg.get("response", "")
                    if piece:
                        text.append(str(piece))
                        times.append(t)
                    if msg.get("done") is True:
                        final = msg
                        break
            except EngineError:
                raise
            except Exception as e:  # requests/urllib3 errors while reading the body
                raise translate_request_error(e, what, self.timeout_s) from None
        if final is None:
            raise StreamError(f"{what}: stream ended after {n_lines} line(s) without its final message (done: true)")
        server = {k: final[k] for k in SERVER_FIELDS if k in final}
        eval_count = final.get("eval_count")
        prompt_count = final.get("prompt_eval_count")
        return GenerationResult(text="".join(text), t_request_ns=t_request, chunk_times_ns=times,
                                finish_reason=final.get("done_reason"), server=server,
                                completion_tokens=eval_count if isinstance(eval_count, int) else None,
                                prompt_tokens=prompt_count if isinstance(prompt_count, int) else None)
