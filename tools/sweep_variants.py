"""Every variant of the GEMV family and of the T-MAC GEMV on the benchmark shapes, batch 1, fp16 x: the evidence
for the "auto" tables (src/cuda/fused_rmsnorm_gemv.cu kMinWarpsPerSm/kMinKForBlock, edgellm_ext.tmac
AUTO_VARIANT_TABLE). Events with the L2 flushed (median of 100 after 20 warm-ups); prints a table. "shared"
(batch 1, K <= 8192) also in CUDA graphs (replay time / launches), next to "warp". --no-tmac: the GEMV family only;
--out FILE: the rows as JSON too.

    python tools/sweep_variants.py [--no-tmac] [--out FILE]
"""

import argparse
import json

import numpy as np
import torch

from edgellm_ext import cuda, gemv, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize
from edgellm_ext.gpu_bench import GEMV_SHAPES


def median_us(timer: cuda.Timer, op: object) -> float:
    return float(np.median(timer.events(op, warmup=20, iterations=100)))


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--no-tmac", action="store_true", help="skip the T-MAC columns (their CPU quantization is slow)")
parser.add_argument("--out", help="also write the rows (median microseconds, null where not run) to this JSON file")
args = parser.parse_args()


def graph_us(timer: cuda.Timer, op: object) -> float:
    return float(np.median(timer.graph(op, launches_per_graph=20, warmup=3, replays=10)))


def cells(times: list) -> str:
    return " / ".join("     -" if t is None else f"{t:6.2f}" for t in times)


rows = []
with cuda.Timer() as timer:
    sms = cuda.device_info()["multiprocessor_count"]
    print(f"{'shape':15s} {'auto gemv':>10s} | gemv warp / block / scalar / shared us | fused warp / block / shared us"
          " | graphs: gemv warp / shared, fused warp / shared us" + ("" if args.no_tmac else " | tmac auto, simple / mma us"))
    for name, (m, k) in GEMV_SHAPES.items():
        w = (torch.randn((m, k), device="cuda") / k**0.5).half()
        x = torch.randn((1, k), device="cuda").half()
        g = torch.ones((k,), device="cuda").half()
        out = torch.empty((1, m), device="cuda", dtype=torch.float16)
        shared_ok = k <= gemv.SHARED_MAX_K

        def plain_op(v):
            return gemv.prepare_gemv(x, w, out=out, variant=v)

        def fused_op(v):
            return gemv.prepare_fused_rmsnorm_matmul(x, g, w, out=out, variant=v)

        plain = [median_us(timer, plain_op(v)) for v in ("warp", "block", "scalar")]
        plain.append(median_us(timer, plain_op("shared")) if shared_ok else None)
        fused = [median_us(timer, fused_op(v)) for v in ("warp", "block")]
        fused.append(median_us(timer, fused_op("shared")) if shared_ok else None)
        graphs = [graph_us(timer, make(v)) if v == "warp" or shared_ok else None
                  for make in (plain_op, fused_op) for v in ("warp", "shared")]
        row = dict(shape=name, m=m, k=k, auto=gemv.choose_variant(m, k, 1, sm_count=sms),
                   gemv_events_us=dict(zip(("warp", "block", "scalar", "shared"), plain)),
                   fused_events_us=dict(zip(("warp", "block", "shared"), fused)),
                   gemv_graph_us=dict(zip(("warp", "shared"), graphs[:2])),
                   fused_graph_us=dict(zip(("warp", "shared"), graphs[2:])))
        line = (f"{name:15s} {gemv.choose_variant(m, k, 1, sm_count=sms):>10s} | {cells(plain)} | {cells(fused)}"
                f" | {cells(graphs)}")
        if not args.no_tmac:
            w_t, scale = ternary_quantize(w.float().cpu().numpy())
            weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
            ternary = [median_us(timer, weights.prepare(x, out, variant=v)) for v in ("simple", "mma")]
            line += f" | {tmac.resolve_variant('auto', m, k)}, {cells(ternary)}"
            row["tmac_events_us"] = dict(zip(("simple", "mma"), ternary))
        rows.append(row)
        print(line, flush=True)
    device = cuda.device_info()["name"]
if args.out:
    with open(args.out, "w") as f:
        json.dump(dict(device=device, timing="CUDA events, L2 flushed, median of 100 after 20 warm-ups; graphs: "
                       "median of 10 replays of 20 launches", batch=1, dtype="float16", rows=rows), f, indent=1)
