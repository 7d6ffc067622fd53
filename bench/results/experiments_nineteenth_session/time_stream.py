"""Nineteenth session: time the T-MAC "stream" kernel (default cap, batch 1, fp16 x) on GEMV_SHAPES names without
checking the result (a timing variant may compute a wrong y on purpose); prints one line per shape:
events with the L2 flushed / per launch in a CUDA graph of 20, median us."""
import sys

import numpy as np
import torch

from edgellm_ext import cuda, tmac
from edgellm_ext.formats import pack_ternary
from edgellm_ext.gpu_bench import GEMV_SHAPES

tag = sys.argv[1]
with cuda.Timer() as timer:
    for name in sys.argv[2].split(","):
        m, k = GEMV_SHAPES[name]
        rng = np.random.default_rng(m)
        w = rng.integers(-1, 2, size=(m, k), dtype=np.int8)
        weights = tmac.TernaryWeights(pack_ternary(w), np.ones(m, np.float32), k)
        x = torch.randn((1, k), device="cuda").half()
        out = torch.empty((1, m), device="cuda", dtype=torch.float32)
        op = weights.prepare(x, out, variant="stream")
        ev = float(np.median(timer.events(op, warmup=20, iterations=100)))
        gr = float(np.median(timer.graph(op, launches_per_graph=20, warmup=3, replays=20)))
        print(f"[{tag}] {name:15s} {ev:6.2f} / {gr:5.2f}", flush=True)
