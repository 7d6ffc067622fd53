"""Every variant of the GEMV family and of the T-MAC GEMV on the benchmark shapes, batch 1, fp16 x: the evidence
for the "auto" tables (src/cuda/fused_rmsnorm_gemv.cu kMinWarpsPerSm/kMinKForBlock, edgellm_ext.tmac
AUTO_VARIANT_TABLE). Events with the L2 flushed (median of 100 after 20 warm-ups); prints a table.

    python tools/sweep_variants.py
"""

import numpy as np
import torch

from edgellm_ext import cuda, gemv, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize
from edgellm_ext.gpu_bench import GEMV_SHAPES


def median_us(timer: cuda.Timer, op: object) -> float:
    return float(np.median(timer.events(op, warmup=20, iterations=100)))


with cuda.Timer() as timer:
    sms = cuda.device_info()["multiprocessor_count"]
    print(f"{'shape':15s} {'auto gemv':>10s} | gemv warp / block / scalar us | fused warp / block us | "
          "tmac auto, simple / mma us")
    for name, (m, k) in GEMV_SHAPES.items():
        w = (torch.randn((m, k), device="cuda") / k**0.5).half()
        x = torch.randn((1, k), device="cuda").half()
        g = torch.ones((k,), device="cuda").half()
        out = torch.empty((1, m), device="cuda", dtype=torch.float16)
        plain = [median_us(timer, gemv.prepare_gemv(x, w, out=out, variant=v)) for v in ("warp", "block", "scalar")]
        fused = [median_us(timer, gemv.prepare_fused_rmsnorm_matmul(x, g, w, out=out, variant=v))
                 for v in ("warp", "block")]
        w_t, scale = ternary_quantize(w.float().cpu().numpy())
        weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
        ternary = [median_us(timer, weights.prepare(x, out, variant=v)) for v in ("simple", "mma")]
        print(f"{name:15s} {gemv.choose_variant(m, k, 1, sm_count=sms):>10s} | "
              + " / ".join(f"{t:6.2f}" for t in plain) + " | " + " / ".join(f"{t:6.2f}" for t in fused)
              + f" | {tmac.resolve_variant('auto', m, k)}, " + " / ".join(f"{t:6.2f}" for t in ternary), flush=True)
