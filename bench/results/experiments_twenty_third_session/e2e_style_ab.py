"""Twenty-third session: why the e2e-gpu suite measures less than ab_settings.py. The experimental build's settings
(environment variables read when an engine is made), one model per setting in one process, decode tok/s of 127
greedy steps timed three ways, alternating, ROUNDS rounds, at each depth:
  greedy   - the prompt prefilled once, Model.greedy runs (ab_settings.py's loop);
  suite    - bench/suites/e2e_gpu.py's loop: per run a Model.greedy run and a Model.forward loop of the same
             steps, inside edgellm_ext.power.PowerSampler (an NVML thread sampling every 20 ms);
  suite_ns - the same loop without the sampler.
Usage: python e2e_style_ab.py MODEL "SETTINGS" ROUNDS DEPTHS RUNS WARMUP"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgellm_ext.models import Model
from edgellm_ext.power import PowerSampler

model_path, settings, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
depths = [int(d) for d in sys.argv[4].split(",")]
runs, warmup = int(sys.argv[5]), int(sys.argv[6])
NEW = 128
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
rng = np.random.default_rng(0)
vocab = models[settings[0]].config.n_vocab
prompts = {d: rng.integers(0, vocab, size=max(1, d)).astype(np.int64) for d in depths}


def measure(m: Model, ids: np.ndarray, first: int, mode: str) -> dict[str, float]:
    greedy, forward = [], []
    sampler = PowerSampler() if mode == "suite" else None
    if sampler:
        sampler.__enter__()
    try:
        for i in range(warmup + runs):
            m.truncate(int(ids.size))
            t0 = time.perf_counter()
            streamed = list(m.greedy(first, NEW - 1))
            dt = time.perf_counter() - t0
            if mode != "greedy":
                m.truncate(int(ids.size))
                token, t1 = first, time.perf_counter()
                for _ in range(NEW - 1):
                    token = m.forward(token)
                forward.append((NEW - 1) / (time.perf_counter() - t1))
                assert token == streamed[-1]
            if i >= warmup:
                greedy.append((NEW - 1) / dt)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    out = {"greedy_tok_s": round(float(np.median(greedy)), 1)}
    if forward:
        out["forward_tok_s"] = round(float(np.median(forward[warmup:])), 1)
    return out


for r in range(rounds):
    for d in depths:
        for s in settings:
            m = models[s]
            m.reset()
            first = int(m.prefill(prompts[d]))
            for mode in ("greedy", "suite", "suite_ns"):
                rec = {"round": r + 1, "depth": d, "setting": s, "mode": mode, **measure(m, prompts[d], first, mode)}
                print(json.dumps(rec), flush=True)
# The stage trace of one step per setting (after the timed rounds; depth 0).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from engine_probe import _graph_stage_summary  # noqa: E402

for s in settings:
    m = models[s]
    m.reset()
    m._engine._enable_stage_trace()
    m.forward(1)
    print(json.dumps({"setting": s, **_graph_stage_summary(m._engine._stage_trace(), m.config.n_layer)}), flush=True)
