"""Twenty-second session (the twenty-first session's script, EXP_VARS changed): the GPU engine under settings
"VAR=VALUE[,VAR=VALUE...]" of environment variables that this session's experimental build reads when it makes
an engine or captures a step's graph (EDGELLM_EXP_*), one process, one model
per setting (graphs are captured on first use, with the setting's variables set; they are set again before each
use). Per setting: the logits of 24 teacher-forced steps compared with the first setting's (bit for bit, else the
largest difference relative to the logit range), then ROUNDS rounds over the settings (alternating) of decode
tok/s at each depth (generate, 128 greedy tokens, median of RUNS runs after one warm-up), then the stage trace of
one step at depth 0 (GEMV kinds, the LM head's work).
Usage: python time_engine_settings.py MODEL "SETTINGS" ROUNDS DEPTHS [RUNS]   (DEPTHS: e.g. 0,1000)"""
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from engine_probe import _graph_stage_summary  # noqa: E402

from edgellm_ext.models import Model  # noqa: E402

model_path, settings, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
depths = [int(d) for d in sys.argv[4].split(",")]
runs = int(sys.argv[5]) if len(sys.argv) > 5 else 4
NEW = 128
EXP_VARS = ["EDGELLM_EXP_UNFUSED_MLP", "EDGELLM_EXP_OPROJ_NOACC"]


def use(setting: str) -> None:
    for var in EXP_VARS:
        os.environ.pop(var, None)
    for assignment in setting.split(","):
        if assignment != "default":
            var, value = assignment.split("=")
            os.environ[var] = value


models = {}
for s in settings:
    use(s)
    models[s] = Model.load(model_path, device="cuda", n_ctx=max(depths) + NEW + 8)
vocab = models[settings[0]].config.n_vocab
rng = np.random.default_rng(0)
teacher = [int(t) for t in rng.integers(0, vocab, size=24)]
ref = None
for s in settings:
    use(s)
    m = models[s]
    m.reset()
    out = np.full((len(teacher), vocab), np.nan, dtype=np.float32)
    for i, t in enumerate(teacher):
        m.forward(t, out[i])
    if ref is None:
        ref = out
    same = bool(np.array_equal(out, ref))
    rel = float((np.abs(out - ref) / np.ptp(ref, axis=1, keepdims=True)).max())
    print(json.dumps({"setting": s, "logits_identical_to_first": same, "max_rel_diff": rel,
                      "finite": bool(np.isfinite(out).all()), "argmax_equal": bool((out.argmax(1) == ref.argmax(1)).all())}),
          flush=True)
prompts = {d: rng.integers(0, vocab, size=max(1, d)).astype(np.int64) for d in depths}
for r in range(rounds):
    for d in depths:
        for s in settings:
            use(s)
            m = models[s]
            m.reset()
            rates, first = [], None
            for run in range(runs + 1):
                toks = list(m.generate(prompts[d], NEW, stop_at_eos=False))
                m.truncate(int(prompts[d].size))
                first = toks[:6]
                if run > 0:
                    rates.append(m.last_stats.decode_tok_s)
            print(json.dumps({"round": r + 1, "depth": d, "setting": s, "decode_tok_s_median": round(float(np.median(rates)), 1),
                              "decode_tok_s": [round(x, 1) for x in rates], "first_tokens": first}), flush=True)
for s in settings:
    use(s)
    m = models[s]
    m.reset()
    m._engine._enable_stage_trace()
    m.forward(teacher[0])
    t = m._engine._stage_trace()
    print(json.dumps({"setting": s, **_graph_stage_summary(t, m.config.n_layer)}), flush=True)
