"""What the engine clients share: the error types, one streamed generation's record, and the end-to-end
benchmark loop that turns generations into labelled measurements.

Client-side timing: ``t_request`` is taken just before the request is sent, each streamed chunk that carries text
gets a ``time.perf_counter_ns`` arrival stamp. TTFT = first text chunk - request; inter-token latency (ITL) = gaps
between consecutive text chunks; client decode rate = (chunks - 1) / (last - first). A chunk is one token for
Ollama and for llama.cpp's/vLLM's streaming servers, but a server may merge tokens under load: the server's own
token counts (``eval_count`` / ``usage``) are recorded beside the client's chunk counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .. import results as R

__all__ = [
    "EngineError",
    "EngineHTTPError",
    "EngineTimeout",
    "EngineUnreachable",
    "GenerationResult",
    "ModelMissing",
    "StreamError",
    "benchmark_engine",
]


class EngineError(Exception):
    """An inference server could not be used; ``str(e)`` is one line meant for the user."""


class EngineUnreachable(EngineError):
    """Connection refused, DNS failure, reset before a response."""


class EngineTimeout(EngineError):
    """No response, or no next chunk, within the timeout."""


class EngineHTTPError(EngineError):
    """The server answered with an HTTP error status or an error object."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class ModelMissing(EngineError):
    """The server does not have the requested model."""


class StreamError(EngineError):
    """The stream was malformed (not JSON / not SSE) or ended before its final message."""


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclasses.dataclass
class GenerationResult:
    """One streamed generation as observed by the client, plus the server's figures as given."""

    text: str
    t_request_ns: int
    chunk_times_ns: list[int]  # arrival of each chunk that carried text
    finish_reason: Optional[str]
    server: dict[str, Any]  # the engine's own figures, unchanged (Ollama: *_duration in ns, *_count)
    completion_tokens: Optional[int] = None  # the server's count of generated tokens, when it gives one
    prompt_tokens: Optional[int] = None

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_times_ns)

    @property
    def ttft_ms(self) -> Optional[float]:
        if not self.chunk_times_ns:
            return None
        return (self.chunk_times_ns[0] - self.t_request_ns) / 1e6

    @property
    def itl_ms(self) -> list[float]:
        t = self.chunk_times_ns
        return [(t[i + 1] - t[i]) / 1e6 for i in range(len(t) - 1)]

    @property
    def client_decode_tok_s(self) -> Optional[float]:
        t = self.chunk_times_ns
        if len(t) < 2 or t[-1] <= t[0]:
            return None
        return (len(t) - 1) / ((t[-1] - t[0]) / 1e9)

    @property
    def total_ms(self) -> Optional[float]:
        if not self.chunk_times_ns:
            return None
        return (self.chunk_times_ns[-1] - self.t_request_ns) / 1e6


Generate = Callable[[str], GenerationResult]


def benchmark_engine(
    *,
    engine: str,
    model_label: str,
    generate: Generate,
    prompts: Sequence[str],
    warmup_runs: int,
    runs: int,
    params: dict[str, Any],
    server_metrics: Callable[[list[GenerationResult]], list[dict[str, Any]]],
    progress: Callable[..., Any] = lambda it, **_: it,
    power_sampler: Optional[Callable[[], Any]] = None,
) -> Iterator[dict[str, Any]]:
    """Warm up, then ``runs`` generations cycling over ``prompts``; yield end-to-end measurements.

    Yields client-side TTFT (ms), ITL (ms, every gap of every run pooled), client decode rate (tok/s, one value per
    run) and the engine's own figures from ``server_metrics``. An EngineError during warm-up propagates (nothing
    measured yet); during the timed runs, the runs finished so far are still reported, then a skip item says why
    the rest did not run.
    """
    for i in range(warmup_runs):
        generate(prompts[i % len(prompts)])
    done: list[GenerationResult] = []
    failure: Optional[str] = None
    sampler = power_sampler() if power_sampler is not None else None
    if sampler is not None:
        sampler.__enter__()
    try:
        for i in progress(range(runs), desc=f"{engine} {model_label}", total=runs):
            try:
                done.append(generate(prompts[i % len(prompts)]))
            except EngineError as e:
                failure = f"run {i + 1}/{runs} failed: {e}"
                break
    finally:
        if sampler is not None:
            sampler.__exit__(None, None, None)
    power = sampler.result() if sampler is not None else None
    if not done:
        yield R.skip(f"{engine} {model_label}", failure or "no run completed")
        return
    base = {**params, "runs": len(done), "runs_requested": runs, "warmup_runs": warmup_runs}
    per_run = [{"prompt_index": i % len(prompts), "n_chunks": g.n_chunks, "ttft_ms": g.ttft_ms,
                "total_ms": g.total_ms, "finish_reason": g.finish_reason, "completion_tokens": g.completion_tokens,
                "prompt_tokens": g.prompt_tokens, "server": g.server} for i, g in enumerate(done)]
    tokens = sum(g.completion_tokens if g.completion_tokens is not None else g.n_chunks for g in done)
    if power is not None:
        gpu = power.get("gpu") or {}
        if gpu.get("energy_j") is not None and tokens:
            power = {**power, "energy_per_token_j": gpu["energy_j"] / tokens, "tokens": tokens}
    empty = sum(1 for g in done if g.n_chunks == 0)
    if empty:
        yield R.note(f"{engine} {model_label}: {empty} of {len(done)} run(s) produced no text (the model ended at "
                     f"once, finish_reason {sorted({str(g.finish_reason) for g in done if g.n_chunks == 0})}); "
                     f"they have no TTFT or decode rate")
    ttft = [g.ttft_ms for g in done if g.ttft_ms is not None]
    if ttft:
        yield R.measurement(name=f"{engine} {model_label} TTFT (client)", kind="end-to-end", engine=engine,
                            metric="ttft", unit="ms", samples=ttft, params=base, model=model_label,
                            notes="request sent -> first streamed text chunk, client clock",
                            extra={"runs": per_run}, power=power)
    itl = [x for g in done for x in g.itl_ms]
    if itl:
        yield R.measurement(name=f"{engine} {model_label} inter-token latency (client)", kind="end-to-end",
                            engine=engine, metric="itl", unit="ms", samples=itl, params=base, model=model_label,
                            notes="gaps between consecutive streamed chunks, all runs pooled")
    rate = [r for r in (g.client_decode_tok_s for g in done) if r is not None]
    if rate:
        yield R.measurement(name=f"{engine} {model_label} decode rate (client)", kind="end-to-end", engine=engine,
                            metric="decode_tok_s", unit="tok/s", samples=rate, params=base, model=model_label,
                            notes="(chunks - 1) / (last chunk - first chunk) per run, client clock")
    for item in server_metrics(done):
        yield R.measurement(kind="end-to-end", engine=engine, model=model_label, params=base, outlier_k=None, **item)
    if failure is not None:
        yield R.skip(f"{engine} {model_label} remaining runs", failure)


def server_rate(done: list[GenerationResult], count_key: str, duration_key: str) -> list[float]:
    """count / duration_ns * 1e9 per run where the server gave both (Ollama's eval_count/eval_duration)."""
    out = []
    for g in done:
        c, d = g.server.get(count_key), g.server.get(duration_key)
        if isinstance(c, (int, float)) and isinstance(d, (int, float)) and d > 0 and c > 0:
            out.append(float(c) / (float(d) / 1e9))
    return out


def as_float_list(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]


def http_session(api_key: Optional[str] = None) -> Any:
    """A requests.Session (requests is imported lazily: only the engine suites need it)."""
    try:
        import requests  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise EngineError("the 'requests' package is needed for engine benchmarks: pip install requests") from e
    s = requests.Session()
    s.trust_env = False  # a loopback or LAN engine must not be sent through an HTTP proxy from the environment
    if api_key:
        s.headers["Authorization"] = f"Bearer {api_key}"
    return s


def translate_request_error(e: BaseException, what: str, timeout_s: float) -> EngineError:
    """Map a requests exception to an EngineError with a one-line message."""
    import requests  # noqa: PLC0415

    if isinstance(e, requests.exceptions.Timeout) or "timed out" in str(e).lower():
        return EngineTimeout(f"{what}: no response within {timeout_s:g} s")
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return StreamError(f"{what}: stream broken before its end ({one_line(str(e), 120)})")
    if isinstance(e, requests.exceptions.ConnectionError):
        text = str(e)
        if "refused" in text.lower():
            why = "connection refused: is the server running?"
        elif "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
            why = "host name not resolved"
        elif "reset" in text.lower() or "aborted" in text.lower():
            why = "connection reset by the server"
        else:
            why = one_line(text, 160)
        return EngineUnreachable(f"{what}: cannot connect ({why})")
    return EngineError(f"{what}: {type(e).__name__}: {one_line(str(e), 160)}")


def _body_pieces(response: Any) -> Iterator[bytes]:
    """Body bytes as soon as they arrive.

    With chunked transfer encoding (what Ollama, llama.cpp's server and vLLM send) ``iter_content(None)`` yields
    each chunk as it arrives. Without it (a body that ends when the connection closes) ``iter_content(None)``
    would wait for the whole body, so every token would seem to arrive at the same instant; urllib3 2's
    ``read1`` returns whatever is available instead."""
    raw = response.raw
    if getattr(raw, "chunked", False) and getattr(raw, "supports_chunked_reads", lambda: False)():
        yield from response.iter_content(chunk_size=None)
    elif hasattr(raw, "read1"):
        while True:
            piece = raw.read1(65536, decode_content=True)
            if not piece:
                return
            yield piece
    else:  # urllib3 1.x: byte-wise reads are slow but never wait for more than is there
        yield from response.iter_content(chunk_size=1)


def iter_lines_timed(response: Any, deadline_ns: int, what: str, timeout_s: float) -> Iterator[tuple[bytes, int]]:
    """Lines of a streamed response body with their arrival time (perf_counter_ns of the read that completed
    them). Raises EngineTimeout past ``deadline_ns``; the read timeout of the request covers a stalled stream."""
    import time  # noqa: PLC0415

    buf = b""
    for chunk in _body_pieces(response):
        now = time.perf_counter_ns()
        if now > deadline_ns:
            raise EngineTimeout(f"{what}: generation not finished within {timeout_s:g} s")
        if not chunk:
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.rstrip(b"\r"), now
    if buf.strip():
        yield buf.rstrip(b"\r"), time.perf_counter_ns()
