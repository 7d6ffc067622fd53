"""Time the T-MAC tensor-core GEMVs ("mma": one block per 16-row tile; "stream": x staged in shared memory, a
persistent grid streaming the weights) at several K-slice caps for the benchmark shapes, batch 1, fp16 x: the
evidence for "auto" (edgellm_ext.tmac.choose_variant) and for the default cap. Each op is checked against a float64
reference first. Events with L2 flushed, and CUDA graphs; prints a table, writes JSON with --out.

    python tools/sweep_tmac.py [--out sweep.json] [--caps 2,4,8] [--shapes big_4096,llama8b_down]
"""

import argparse
import json

import numpy as np
import torch

from edgellm_ext import cuda, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize
from edgellm_ext.gpu_bench import GEMV_SHAPES

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", help="write the medians as JSON here")
parser.add_argument("--caps", default="2,4,8", help="K-slice caps to sweep (comma-separated)")
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--variants", default="mma,stream", help="variants to sweep (comma-separated)")
parser.add_argument("--shapes", default=",".join(GEMV_SHAPES),
                    help="shapes to sweep (comma-separated): GEMV_SHAPES names or MxK, e.g. 3584x18944")
args = parser.parse_args()
caps = [int(c) for c in args.caps.split(",")]


def parse_shape(text: str) -> tuple[int, int]:
    if text in GEMV_SHAPES:
        return GEMV_SHAPES[text]
    m, sep, k = text.partition("x")
    if not (sep and m.isdigit() and k.isdigit() and int(m) > 0 and int(k) > 0):
        parser.error(f"--shapes: {text!r} is neither a GEMV_SHAPES name ({', '.join(GEMV_SHAPES)}) nor MxK")
    return int(m), int(k)


shapes = {text: parse_shape(text) for text in args.shapes.split(",")}

results = []
with cuda.Timer() as timer:
    for name, (m, k) in shapes.items():
        w_t, scale = ternary_quantize(np.random.default_rng(m).standard_normal((m, k), dtype=np.float32))
        weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
        x = torch.randn((1, k), device="cuda").half()
        out = torch.empty((1, m), device="cuda", dtype=torch.float32)
        ref = (x.double() @ torch.from_numpy(w_t).cuda().double().T) * torch.from_numpy(scale).cuda().double()
        row = []
        for variant in args.variants.split(","):
            for cap in caps:
                try:
                    op = weights.prepare(x, out, variant=variant, max_k_slices=cap)
                except ValueError as e:  # a variant that refuses the shape (e.g. x too large to stage)
                    print(f"  {name} {variant} cap {cap}: not run ({e})", flush=True)
                    continue
                out.fill_(float("nan"))
                op.launch(0)
                torch.cuda.synchronize()
                err = float((out.double() - ref).abs().max() / ref.abs().max())
                if not err < 1e-5:
                    raise RuntimeError(f"{name} {variant} cap {cap}: relative error {err:.3g} vs float64")
                ev = float(np.median(timer.events(op, warmup=20, iterations=args.iterations)))
                gr = float(np.median(timer.graph(op, launches_per_graph=20, warmup=3, replays=20)))
                shape = dict(op.launch_shape)
                results.append({"shape": name, "m": m, "k": k, "variant": variant, "cap": cap, "events_us": ev,
                                "graph_us": gr, "launch_shape": shape, "packed_bytes": weights.packed_bytes})
                row.append(f"{variant[:3]} {cap}: {ev:6.2f}/{gr:5.2f} ({shape['k_slices']}x{shape['blocks']})")
        print(f"{name:15s} " + "  ".join(row), flush=True)
if args.out:
    with open(args.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "batch": 1, "x_dtype": "float16",
                   "timing": "median us: CUDA events with the L2 flushed / per launch in a CUDA graph of 20",
                   "results": results}, f, indent=1)
