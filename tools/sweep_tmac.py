"""Time the T-MAC mma GEMV at every K-slice cap (warps splitting K) for the benchmark shapes, batch 1, fp16 x:
the evidence for tmac_mma_launch_shape's choice. Events with L2 flushed, and CUDA graphs; prints a table.

    python tools/sweep_tmac.py
"""

import numpy as np
import torch

from edgellm_ext import cuda, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize
from edgellm_ext.gpu_bench import GEMV_SHAPES

with cuda.Timer() as timer:
    for name, (m, k) in GEMV_SHAPES.items():
        w_t, scale = ternary_quantize(np.random.default_rng(m).standard_normal((m, k), dtype=np.float32))
        weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
        x = torch.randn((1, k), device="cuda").half()
        out = torch.empty((1, m), device="cuda", dtype=torch.float16)
        row = []
        for cap in (1, 2, 4, 8):
            op = weights.prepare(x, out, max_k_slices=cap)
            ev = np.median(timer.events(op, warmup=20, iterations=100))
            gr = np.median(timer.graph(op, launches_per_graph=20, warmup=3, replays=20))
            row.append(f"{cap}: {ev:6.2f}/{gr:5.2f} ({op.launch_shape['k_slices']}x{op.launch_shape['tiles_per_warp']})")
        print(f"{name:15s} " + "  ".join(row), flush=True)
