"""Ollama suite: end-to-end generation through Ollama's HTTP API (``/api/generate``, streaming).

For each model (``--model``, default: every registry model whose Ollama tag the server has): warm-up runs, then
the timed runs cycling over the methodology's prompts at temperature 0 with a fixed ``num_predict``. Reported:
client-side TTFT, inter-token latency and decode rate from the stream; the server's own decode and prompt rates
(eval_count/eval_duration, prompt_eval_count/prompt_eval_duration) and load_duration/total_duration exactly as
Ollama gives them (ns). Every run's raw figures are kept in the TTFT measurement's ``extra.runs``.

``num_predict`` is a maximum: a model that stops early (EOS) generates fewer tokens; the per-run
``completion_tokens`` (eval_count) shows it.
"""

from __future__ import annotations

from typing import Any, Iterator

from edgellm_ext import results as R
from edgellm_ext.clients import EngineError, OllamaClient, benchmark_engine
from edgellm_ext.clients.common import as_float_list, server_rate
from edgellm_ext.harness import SuiteSkip
from edgellm_ext.models import MODELS

NAME = "ollama"
KIND = "end-to-end"
DESCRIPTION = "Ollama /api/generate streaming: TTFT, inter-token latency, server eval rates (end-to-end)"


def _client(ctx: Any) -> OllamaClient:
    return OllamaClient(ctx.options["ollama_url"], timeout_s=ctx.options["request_timeout_s"])


def available(ctx: Any) -> tuple[bool, str]:
    try:
        with _client(ctx) as client:
            client.list_models()
    except EngineError as e:
        return False, f"Ollama server not usable: {e}"
    return True, ""


def _server_metrics(done: list) -> list[dict[str, Any]]:
    out = []
    decode = server_rate(done, "eval_count", "eval_duration")
    if decode:
        out.append({"name": "decode rate (server eval_count/eval_duration)", "metric": "server_decode_tok_s",
                    "unit": "tok/s", "samples": decode, "notes": "Ollama's eval_count / eval_duration per run"})
    prompt = server_rate(done, "prompt_eval_count", "prompt_eval_duration")
    if prompt:
        out.append({"name": "prompt rate (server prompt_eval_count/prompt_eval_duration)",
                    "metric": "server_prompt_tok_s", "unit": "tok/s", "samples": prompt,
                    "notes": "Ollama's prompt_eval_count / prompt_eval_duration per run (prompt cache may apply)"})
    for key in ("load_duration", "total_duration"):
        values = as_float_list([g.server.get(key) for g in done])
        if values:
            out.append({"name": f"{key} (server)", "metric": key, "unit": "ns", "samples": values,
                        "notes": f"Ollama's {key} as given, nanoseconds"})
    return out


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    m = ctx.methodology
    with _client(ctx) as client:
        try:
            on_server = client.list_models()
        except EngineError as e:
            raise SuiteSkip(f"Ollama server not usable: {e}") from None
        if ctx.models is not None:
            models = list(ctx.models)
        else:
            models = [cfg for cfg in MODELS.values()
                      if cfg.ollama_name and client.has_model(cfg.ollama_name, on_server)]
            if not models:
                raise SuiteSkip(f"none of the registry's Ollama models is on the server (it has: "
                                f"{', '.join(on_server) or 'nothing'}); e.g. ollama pull smollm2:135m")
        yield R.note(f"Ollama at {client.base_url}; models on the server: {', '.join(on_server) or 'none'}")
        for cfg in models:
            tag = cfg.ollama_name
            if not tag:
                yield R.skip(cfg.name, f"{cfg.name} has no Ollama tag in the registry")
                continue
            if not client.has_model(tag, on_server):
                yield R.skip(cfg.name, f"model {tag!r} is not on the Ollama server at {client.base_url}; "
                                       f"run: ollama pull {tag}")
                continue

            def generate(prompt: str, tag: str = tag) -> Any:
                return client.generate(tag, prompt, num_predict=m.num_predict, temperature=m.temperature,
                                       seed=m.seed)

            try:
                yield from benchmark_engine(
                    engine="ollama", model_label=cfg.name, generate=generate, prompts=m.prompts,
                    warmup_runs=m.e2e_warmup_runs, runs=m.e2e_runs,
                    params={"ollama_tag": tag, "num_predict": m.num_predict, "temperature": m.temperature},
                    server_metrics=_server_metrics, progress=ctx.progress, power_sampler=ctx.power_sampler)
            except EngineError as e:
                yield R.skip(cfg.name, str(e))
