"""OpenAI-compatible suite: end-to-end generation through any server's streaming ``/v1/completions``
(llama.cpp's ``llama-server``, vLLM, SGLang; see docs/benchmarks.md for starting one on the SmolLM2 GGUF).

Served model: ``--openai-model`` or the server's first model. Labelled with the registry model when ``--model``
names exactly one. Reported: client-side TTFT, inter-token latency and decode rate; when the server gives
llama.cpp's ``timings``, its ``predicted_per_second`` and ``prompt_per_second`` as given; per-run usage in
``extra.runs``.
"""

from __future__ import annotations

from typing import Any, Iterator

from edgellm_ext import results as R
from edgellm_ext.clients import EngineError, OpenAICompatClient, benchmark_engine
from edgellm_ext.clients.common import as_float_list
from edgellm_ext.harness import SuiteSkip

NAME = "openai"
KIND = "end-to-end"
DESCRIPTION = "OpenAI-compatible /v1/completions streaming (llama.cpp server, vLLM, SGLang) (end-to-end)"


def _client(ctx: Any) -> OpenAICompatClient:
    return OpenAICompatClient(ctx.options["openai_url"], api_key=ctx.options.get("api_key"),
                              timeout_s=ctx.options["request_timeout_s"])


def available(ctx: Any) -> tuple[bool, str]:
    try:
        with _client(ctx) as client:
            client.list_models()
    except EngineError as e:
        return False, f"OpenAI-compatible server not usable: {e}"
    return True, ""


def _server_metrics(done: list) -> list[dict[str, Any]]:
    out = []
    for key, metric in (("predicted_per_second", "server_decode_tok_s"), ("prompt_per_second", "server_prompt_tok_s")):
        values = as_float_list([(g.server.get("timings") or {}).get(key) for g in done])
        if values:
            out.append({"name": f"{key} (server timings)", "metric": metric, "unit": "tok/s", "samples": values,
                        "notes": f"the server's timings.{key} as given (llama.cpp server)"})
    return out


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    m = ctx.methodology
    with _client(ctx) as client:
        try:
            served = client.list_models()
        except EngineError as e:
            raise SuiteSkip(f"OpenAI-compatible server not usable: {e}") from None
        model_id = ctx.options.get("openai_model") or (served[0] if served else None)
        if model_id is None:
            raise SuiteSkip(f"the server at {client.base_url} lists no model; pass --openai-model")
        if served and model_id not in served:
            raise SuiteSkip(f"model {model_id!r} is not served at {client.base_url} (it serves: {', '.join(served)})")
        label = ctx.models[0].name if ctx.models is not None and len(ctx.models) == 1 else model_id
        yield R.note(f"OpenAI-compatible server at {client.base_url}; serving: {', '.join(served) or 'unlisted'}")

        def generate(prompt: str) -> Any:
            return client.generate(model_id, prompt, max_tokens=m.num_predict, temperature=m.temperature, seed=m.seed)

        try:
            yield from benchmark_engine(
                engine="openai-compat", model_label=label, generate=generate, prompts=m.prompts,
                warmup_runs=m.e2e_warmup_runs, runs=m.e2e_runs,
                params={"served_model": model_id, "max_tokens": m.num_predict, "temperature": m.temperature},
                server_metrics=_server_metrics, progress=ctx.progress, power_sampler=ctx.power_sampler)
        except EngineError as e:
            yield R.skip(label, str(e))
