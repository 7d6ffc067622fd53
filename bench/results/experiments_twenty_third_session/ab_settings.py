"""Twenty-third session: the GPU engine under settings "VAR=VALUE[,VAR=VALUE...]" ("default": none) of the
environment variables this session's experimental build reads when it makes an engine (EDGELLM_EXP_*), one
process, one model per setting. Per setting: the logits of 24 teacher-forced steps compared with the first
setting's, then ROUNDS rounds over the settings (alternating) of decode tok/s at each depth, timed as the e2e-gpu
suite times ours: the prompt prefilled once, then RUNS timed runs (after one warm-up) of 127 greedy steps through
Model.greedy (pipelined), the cache truncated back to the prompt before each; then the stage trace of one step.
Usage: python ab_settings.py MODEL "SETTINGS" ROUNDS DEPTHS [RUNS]   (DEPTHS: e.g. 0,4096)"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from engine_probe import _graph_stage_summary  # noqa: E402

from edgellm_ext.models import Model  # noqa: E402

model_path, settings, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
depths = [int(d) for d in sys.argv[4].split(",")]
runs = int(sys.argv[5]) if len(sys.argv) > 5 else 5
NEW = 127
exp_vars = sorted({a.split("=")[0] for s in settings for a in s.split(",") if a != "default"})


def use(setting: str) -> None:
    for var in exp_vars:
        os.environ.pop(var, None)
    for assignment in setting.split(","):
        if assignment != "default":
            var, value = assignment.split("=")
            os.environ[var] = value


models = {}
for s in settings:
    use(s)
    models[s] = Model.load(model_path, device="cuda", n_ctx=max(depths) + NEW + 8)
    print(json.dumps({"setting": s, "counters_before_a_step": models[s].gpu_counters()}), flush=True)
vocab = models[settings[0]].config.n_vocab
rng = np.random.default_rng(0)
teacher = [int(t) for t in rng.integers(0, vocab, size=24)]
ref = None
for s in settings:
    m = models[s]
    m.reset()
    out = np.full((len(teacher), vocab), np.nan, dtype=np.float32)
    for i, t in enumerate(teacher):
        m.forward(t, out[i])
    if ref is None:
        ref = out
    rel = float((np.abs(out - ref) / np.ptp(ref, axis=1, keepdims=True)).max())
    print(json.dumps({"setting": s, "logits_identical_to_first": bool(np.array_equal(out, ref)), "max_rel_diff": rel,
                      "finite": bool(np.isfinite(out).all()),
                      "argmax_equal": bool((out.argmax(1) == ref.argmax(1)).all())}), flush=True)
prompts = {d: rng.integers(0, vocab, size=max(1, d)).astype(np.int64) for d in depths}
for r in range(rounds):
    for d in depths:
        for s in settings:
            m = models[s]
            m.reset()
            first = int(m._engine.prefill(prompts[d], None))
            rates, tokens = [], None
            for run in range(runs + 1):
                m.truncate(int(prompts[d].size))
                t0 = time.perf_counter()
                toks = list(m.greedy(first, NEW))
                dt = time.perf_counter() - t0
                tokens = toks[:6]
                if run > 0:
                    rates.append(NEW / dt)
            print(json.dumps({"round": r + 1, "depth": d, "setting": s,
                              "decode_tok_s_median": round(float(np.median(rates)), 1),
                              "decode_tok_s": [round(x, 1) for x in rates], "first_tokens": tokens,
                              "counters": {k: v for k, v in m.gpu_counters().items()
                                           if k in ("kernels_per_step", "graph_nodes", "fused_mlp",
                                                    "last_step_d2h_bytes")}}), flush=True)
for s in settings:
    m = models[s]
    m.reset()
    m._engine._enable_stage_trace()
    m.forward(1)
    print(json.dumps({"setting": s, **_graph_stage_summary(m._engine._stage_trace(), m.config.n_layer)}), flush=True)
