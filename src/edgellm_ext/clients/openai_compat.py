"""Client for OpenAI-compatible completion servers (llama.cpp's ``llama-server``, vLLM, SGLang, ...).

- ``GET /v1/models`` -> ``{"data": [{"id": "<model id>", ...}]}``
- ``POST /v1/completions`` with ``"stream": true`` -> Server-Sent Events: ``data: {json}`` lines separated by
  blank lines, each ``{"choices": [{"text": "<piece>", "index": 0, "finish_reason": null | "stop" | "length"}]}``;
  with ``stream_options.include_usage`` a last chunk ``{"choices": [], "usage": {"prompt_tokens",
  "completion_tokens"}}``; then ``data: [DONE]``. Errors: an HTTP error status with ``{"error": {"message"}}``,
  or a ``data: {"error": ...}`` event mid-stream. llama.cpp's server adds ``timings`` (``predicted_per_second``,
  ``prompt_per_second``, ``predicted_ms``, ...) to its last chunk: kept as given.

A stream that ends without ``[DONE]`` is reported as truncated.
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

__all__ = ["OpenAICompatClient"]


def _error_message(body: Any) -> Optional[str]:
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        if isinstance(err, dict):
            return one_line(str(err.get("message") or err))
        return one_line(str(err))
    return None


class OpenAICompatClient:
    """Minimal streaming ``/v1/completions`` client. ``timeout_s`` bounds each wait for data and, as a deadline, a
    whole generation."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, api_key: Optional[str] = None,
                 timeout_s: float = 300.0, connect_timeout_s: float = 5.0, include_usage: bool = True,
                 extra_body: Optional[dict[str, Any]] = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            base_url = "http://" + base_url
        base = base_url.rstrip("/")
        self.base_url = base[:-3] if base.endswith("/v1") else base
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.include_usage = include_usage
        self.extra_body = dict(extra_body or {})
        self._session = http_session(api_key)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "OpenAICompatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _http_error(self, what: str, r: Any) -> EngineError:
        try:
            msg = _error_message(r.json()) or one_line(r.text)
        except ValueError:
            msg = one_line(r.text or r.reason or "")
        if r.status_code == 404 and "model" in msg.lower():
            return ModelMissing(f"{what}: model not found: {msg}")
        return EngineHTTPError(f"{what}: HTTP {r.status_code}: {msg}", r.status_code)

    def list_models(self) -> list[str]:
        """Model ids the server serves (``/v1/models``)."""
        what = f"OpenAI-compatible server at {self.base_url}"
        try:
            r = self._session.get(f"{self.base_url}/v1/models", timeout=(self.connect_timeout_s, self.timeout_s))
        except Exception as e:
            raise translate_request_error(e, what, self.timeout_s) from None
        if r.status_code != 200:
            raise self._http_error(f"{what}: GET /v1/models", r)
        try:
            return [str(m["id"]) for m in r.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise StreamError(f"{what}: /v1/models answer is not {{'data': [{{'id': ...}}]}}: "
                              f"{one_line(r.text, 120)}") from None

    def generate(self, model: str, prompt: str, *, max_tokens: int, temperature: float = 0.0,
                 seed: Optional[int] = 0) -> GenerationResult:
        """One streamed ``/v1/completions`` call, timed on the client."""
        what = f"{model} at {self.base_url}"
        payload: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": int(max_tokens),
                                   "temperature": temperature, "stream": True}
        if seed is not None:
            payload["seed"] = int(seed)
        if self.include_usage:
            payload["stream_options"] = {"include_usage": True}
        payload.update(self.extra_body)
        t_request = time.perf_counter_ns()
        deadline = t_request + int(self.timeout_s * 1e9)
        try:
            r = self._session.post(f"{self.base_url}/v1/completions", json=payload, stream=True,
                                   timeout=(self.connect_timeout_s, self.timeout_s))
        except Exception as e:
            raise translate_request_error(e, what, self.timeout_s) from None
        text: list[str] = []
        times: list[int] = []
        finish: Optional[str] = None
        usage: Optional[dict[str, Any]] = None
        timings: Optional[dict[str, Any]] = None
        saw_done = False
        n_events = 0
        with r:
            if r.status_code != 200:
                raise self._http_error(what, r)
            data_lines: list[str] = []
            try:
                for raw, t in iter_lines_timed(r, deadline, what, self.timeout_s):
                    line = raw.decode("utf-8", "replace")
                    if line.startswith("data:"):
                        data_lines.append(line[5:].lstrip(" "))
                        continue
                    if line.strip() and not line.startswith((":", "event:", "id:", "retry:")):
                        raise StreamError(f"{what}: not a Server-Sent Events line: {one_line(line, 80)!r}")
                    if line.strip() or not data_lines:
                        continue
                    # A blank line ends one event.
                    data = "\n".join(data_lines)
                    data_lines = []
                    n_events += 1
                    if data.strip() == "[DONE]":
                        saw_done = True
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise StreamError(f"{what}: malformed event {n_events}: {one_line(data, 80)!r}") from None
                    msg = _error_message(event)
                    if msg is not None:
                        raise EngineHTTPError(f"{what}: error in stream: {msg}")
                    if not isinstance(event, dict):
                        raise StreamError(f"{what}: event {n_events} is not a JSON object")
                    for choice in event.get("choices") or []:
                        piece = choice.get("text") or ""
                        if piece:
                            text.append(str(piece))
                            times.append(t)
                        if choice.get("finish_reason"):
                            finish = str(choice["finish_reason"])
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                    if isinstance(event.get("timings"), dict):
                        timings = event["timings"]
            except EngineError:
                raise
            except Exception as e:  # requests/urllib3 errors while reading the body
                raise translate_request_error(e, what, self.timeout_s) from None
        if not saw_done:
            raise StreamError(f"{what}: stream ended after {n_events} event(s) without 'data: [DONE]' (truncated)")
        server: dict[str, Any] = {}
        if usage is not None:
            server["usage"] = usage
        if timings is not None:
            server["timings"] = timings
        completion = usage.get("completion_tokens") if usage else None
        prompt_tokens = usage.get("prompt_tokens") if usage else None
        return GenerationResult(text="".join(text), t_request_ns=t_request, chunk_times_ns=times,
                                finish_reason=finish, server=server,
                                completion_tokens=completion if isinstance(completion, int) else None,
                                prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None)
