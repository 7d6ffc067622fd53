"""Quick speed/consistency probe of the decode engines (not a benchmark: bench/run.py --suite e2e-gpu is).

    python tools/engine_probe.py --model PATH [--device cuda] [--depth 0] [--runs 5]
    python tools/engine_probe.py --synthetic DIR   # writes a random SmolLM2-shaped GGUF (30 layers, vocab 258)
    python tools/engine_probe.py --synthetic DIR --synthetic-type F16   # the same with F16 matrices

Prints per-run TTFT, decode tok/s for 128 greedy tokens (generate: pipelined on the GPU) and for the same steps
as a Model.forward loop (one synchronous step per call), and the GPU engine's counters, as JSON lines.
--trace: per-stage GPU times of the last step (both step modes; GpuEngine::stage_trace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--synthetic", help="folder to write a random SmolLM2-shaped GGUF into (then probe it)")
    ap.add_argument("--synthetic-type", default="Q4_1", choices=["Q4_0", "Q4_1", "Q8_0", "F16"],
                    help="ggml type of every matrix of the synthetic model (default Q4_1)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--depth", type=int, default=0, help="prompt tokens before the timed decode")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--no-pdl", action="store_true", help="plain stream order instead of programmatic launch")
    ap.add_argument("--step-mode", default="graph", choices=["graph", "persistent"])
    ap.add_argument("--activations", default=None, choices=["q8_1", "f32"],
                    help="GPU engine GEMV activations (default: the engine's for the step mode)")
    ap.add_argument("--trace", action="store_true", help="per-stage GPU times of the last step")
    args = ap.parse_args()
    if args.trace and args.device != "cuda":
        ap.error("--trace needs --device cuda")
    from edgellm_ext.models import Model

    path = args.model
    if args.synthetic:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import gguf
        from test_engine import write_tiny_gguf

        qt = gguf.GGMLQuantizationType[args.synthetic_type]
        matrices = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
        types = {**{f"{m}.weight": qt for m in matrices}, "token_embd.weight": qt}
        suffix = "" if args.synthetic_type == "Q4_1" else "_" + args.synthetic_type.lower()
        path = str(Path(args.synthetic) / f"smol_shaped{suffix}.gguf")
        t = time.perf_counter()
        write_tiny_gguf(Path(path), "llama", types=types, dims=(576, 9, 3, 64, 1536), n_layer=30, seed=1)
        print(json.dumps({"synthetic_written_s": round(time.perf_counter() - t, 1), "path": path}), flush=True)
    t = time.perf_counter()
    extra = ({"programmatic_launch": not args.no_pdl, "step_mode": args.step_mode, "activations": args.activations}
             if args.device == "cuda" else {})
    m = Model.load(path, device=args.device, n_ctx=args.depth + args.new + 8, **extra)
    print(json.dumps({"load_s": round(time.perf_counter() - t, 2), "summary": m.summary()}), flush=True)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, m.config.n_vocab, size=max(1, args.depth)).astype(np.int64)
    if args.trace:
        m._engine._enable_stage_trace()
    for run in range(args.runs + 1):
        toks = list(m.generate(prompt, args.new, stop_at_eos=False))
        s = m.last_stats
        m.truncate(int(prompt.size))
        token = toks[0]
        t0 = time.perf_counter()
        for _ in range(args.new - 1):
            token = m.forward(token)
        forward_tok_s = (args.new - 1) / (time.perf_counter() - t0)
        rec = {"run": run, "warmup": run == 0, "prompt": int(prompt.size), "ttft_ms": round(s.prefill_s * 1e3, 2),
               "decode_tok_s": round(s.decode_tok_s, 1), "forward_loop_tok_s": round(forward_tok_s, 1),
               "same_tokens": token == toks[-1], "first_tokens": toks[:8]}
        if args.device == "cuda":
            rec.update(m.gpu_counters())
        print(json.dumps(rec), flush=True)
    if args.trace:
        t = m._engine._stage_trace()
        summary = _stage_summary if args.step_mode == "persistent" else _graph_stage_summary
        print(json.dumps(summary(t, m.config.n_layer)), flush=True)
    return 0


def _graph_stage_summary(t: list[int], n_layer: int) -> dict[str, object]:
    """Per GEMV kind, the mean over layers (us) of: 'gap' = its first block past the programmatic wait minus the
    previous GEMV's last block end (for o-proj: the attention kernel and two launches lie in between), 'early' =
    how long before that its first block started (weights prefetched meanwhile), 'skew' = last minus first block
    past the wait, 'work' = last block's end minus first block past the wait."""
    kinds = ["qkv", "o-proj", "gate/up", "down"] * n_layer + ["head"]
    rows = [t[4 * i:4 * i + 4] for i in range(len(kinds))]
    acc: dict[str, dict[str, list[float]]] = {}
    for i, (kind, (start, first, last, end)) in enumerate(zip(kinds, rows)):
        a = acc.setdefault(kind, {"gap": [], "early": [], "skew": [], "work": []})
        if i > 0:
            a["gap"].append((first - rows[i - 1][3]) / 1e3)
        a["early"].append((first - start) / 1e3)
        a["skew"].append((last - first) / 1e3)
        a["work"].append((end - first) / 1e3)
    return {"graph_stage_trace_us": {
        "total": round((rows[-1][3] - rows[0][0]) / 1e3, 1),
        "per_kind_mean": {k: {m: round(float(np.mean(v)), 2) if v else None for m, v in a.items()}
                          for k, a in acc.items()}}}


def _stage_summary(t: list[int], n_layer: int) -> dict[str, object]:
    """Block 0's time per stage kind (us, summed over layers): work = from leaving the previous barrier to arriving
    at this one, wait = inside the barrier."""
    kinds = ["embed"] + ["qkv", "attn", "o-proj", "gate/up", "down"] * n_layer + ["head"]
    work: dict[str, float] = {}
    wait: dict[str, float] = {}
    prev = t[0]
    for i, kind in enumerate(kinds):
        arrive, leave = t[1 + 2 * i], t[2 + 2 * i]
        work[kind] = work.get(kind, 0.0) + (arrive - prev) / 1e3
        wait[kind] = wait.get(kind, 0.0) + (leave - arrive) / 1e3
        prev = leave
    return {"stage_trace_us": {"total": round((t[-1] - t[0]) / 1e3, 1),
                               "work": {k: round(v, 1) for k, v in work.items()},
                               "wait": {k: round(v, 1) for k, v in wait.items()}}}


if __name__ == "__main__":
    raise SystemExit(main())
