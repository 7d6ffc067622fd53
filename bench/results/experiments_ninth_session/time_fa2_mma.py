"""Experiment: the fa2 tensor-core kernel of the build on PYTHONPATH (auto split count and twice that) on
long-context shapes, checked against a float64 reference; one JSON line per shape. Usage: python time_fa2_mma.py LABEL"""
import json, math, sys
import numpy as np, torch
import torch.nn.functional as F
from edgellm_ext import attention, cuda

label = sys.argv[1]  # the build being timed; SDPA is timed beside the first label of a script ("96", "single")
SHAPES = [("SmolLM2", 9, 3, 64, 1), ("Qwen0.5B", 14, 2, 64, 1), ("Qwen1.5B", 12, 2, 128, 1), ("Llama8B", 32, 8, 128, 1),
          ("Llama8B x8", 32, 8, 128, 8)]
rows = []
with cuda.Timer() as timer:
    for name, hq, hkv, d, batch in SHAPES:
        for length in (8192, 16384, 65536):
            if batch > 1 and length != 16384:
                continue
            g = torch.Generator(device="cuda").manual_seed(length)
            q = torch.randn((batch, hq, d), device="cuda", dtype=torch.float16, generator=g)
            k = torch.randn((batch, hkv, length, d), device="cuda", dtype=torch.float16, generator=g)
            v = torch.randn_like(k)
            out = torch.empty_like(q)
            lens = np.full(batch, length, dtype=np.int32)
            grp = hq // hkv
            kr = k.double().repeat_interleave(grp, dim=1); vr = v.double().repeat_interleave(grp, dim=1)
            p = torch.softmax((kr @ q.double().unsqueeze(-1)).squeeze(-1) / math.sqrt(d), dim=-1)
            ref = (p.unsqueeze(-1) * vr).sum(dim=2)
            del kr, vr, p
            row = {"label": label, "model": name, "length": length}
            plans = {"mma": dict(variant="mma")}
            base = attention.Fa2Decode(q, k, v, lens, out, variant="mma").num_splits
            plans["mma 2x splits"] = dict(variant="mma", num_splits=min(128, 2 * base))
            for key, kw in plans.items():
                plan = attention.Fa2Decode(q, k, v, lens, out, **kw)
                out.fill_(float("nan")); plan.launch(); torch.cuda.synchronize()
                err = float((out.double() - ref).abs().max())
                assert err < 4e-3, (name, length, key, err)
                ev = float(np.median(timer.events(plan.op, warmup=20, iterations=100)))
                gr = float(np.median(timer.graph(plan.op, launches_per_graph=20, warmup=3, replays=20)))
                row[key] = {"splits": plan.num_splits, "events_us": ev, "graph_us": gr}
            if label in ("96", "single"):
                q4 = q.unsqueeze(2)
                row["sdpa_events_us"] = float(np.median(timer.callable(
                    lambda: F.scaled_dot_product_attention(q4, k, v, enable_gqa=True), warmup=20, iterations=100)))
            rows.append(row)
            print(json.dumps(row), flush=True)
