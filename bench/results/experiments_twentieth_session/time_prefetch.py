"""Twentieth session: time the T-MAC "stream" kernel (default launch shape, batch 1, fp16 x) on GEMV_SHAPES names
under L2-prefetch settings "tiles:mode" (set through TMAC_L2_PREFETCH_TILES / _MODE, which this session's
experimental build reads when an op is prepared), beside cuBLAS fp16 (F.linear) of the same shape, same process.
Per shape the weights are made once; then ROUNDS rounds over the settings (alternating). One line per (round,
setting, shape): stream events with the L2 flushed / per launch in a CUDA graph of 20 (median us), cuBLAS events,
the events ratio, and whether y matched a float64 reference within 1e-3 of the codes form's bound.
Usage: python time_prefetch.py SHAPES SETTINGS ROUNDS"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from edgellm_ext import cuda, tmac
from edgellm_ext.formats import pack_ternary
from edgellm_ext.gpu_bench import GEMV_SHAPES

shapes, settings, rounds = sys.argv[1].split(","), sys.argv[2].split(), int(sys.argv[3])
with cuda.Timer() as timer:
    for name in shapes:
        m, k = GEMV_SHAPES[name]
        rng = np.random.default_rng(m)
        w = rng.integers(-1, 2, size=(m, k), dtype=np.int8)
        weights = tmac.TernaryWeights(pack_ternary(w), np.ones(m, np.float32), k)
        x = torch.randn((1, k), device="cuda").half()
        wt = torch.from_numpy(w).cuda()
        xd = x.double()[0]
        ref = (wt.double() @ xd)
        bound = ((wt.double() + 1).abs() + 1) @ xd.abs()
        del wt
        w16 = torch.randn((m, k), device="cuda").half()
        for r in range(rounds):
            cb = float(np.median(timer.callable(lambda: F.linear(x, w16), warmup=20, iterations=100)))
            for s in settings:
                os.environ["TMAC_L2_PREFETCH_TILES"], os.environ["TMAC_L2_PREFETCH_MODE"] = s.split(":")
                out = torch.full((1, m), float("nan"), device="cuda", dtype=torch.float32)
                op = weights.prepare(x, out, variant="stream")
                op.launch(torch.cuda.current_stream().cuda_stream)
                torch.cuda.synchronize()
                ok = bool(((out[0].double() - ref).abs() <= 1e-3 * bound + 1e-6).all())
                ev = float(np.median(timer.events(op, warmup=20, iterations=100)))
                gr = float(np.median(timer.graph(op, launches_per_graph=20, warmup=3, replays=20)))
                pf = op.launch_shape.get("l2_prefetch_tiles")
                print(f"r{r + 1} {s:5s} {name:15s} {ev:6.2f} / {gr:5.2f}  cublas {cb:6.2f}  ratio {ev / cb:.3f}"
                      f"  pf={pf} ok={ok}", flush=True)
        del w16, weights
