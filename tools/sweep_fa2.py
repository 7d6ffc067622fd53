"""fa2_decode over its variants (SIMT at every heads-per-block choice, tensor cores) beside torch SDPA, on the
kernels suite's model shapes and cache lengths: the evidence for the "auto" rules in src/cuda/fa2_decode.cu
(fa2_default_variant, fa2_default_heads_per_block). Events with the L2 flushed (median of
`--iterations` after 20 warm-ups); every variant is first checked against a float64 reference. Prints a table and
writes JSON.

    python tools/sweep_fa2.py --out fa2_sweep.json [--models SmolLM2-135M ...] [--lengths 64 4096 ...]
                              [--shapes 32,32,128 32,8,128,8 ...]   (HQ,HKV,D[,BATCH]; --models with no names: none)
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

from edgellm_ext import attention, cuda
from edgellm_ext.models import get_model

LENGTHS = (64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
MODELS = ("SmolLM2-135M", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Llama-3.1-8B")


def attention_case(batch: int, n_q_heads: int, n_kv_heads: int, head_dim: int, length: int):
    """Random fp16 q [B, Hq, D] and K/V caches [B, Hkv, length, D] on the GPU (seeded by the length), int32 lengths,
    and the float64 attention reference [B, Hq, D]."""
    group = n_q_heads // n_kv_heads
    g = torch.Generator(device="cuda").manual_seed(length)
    q = torch.randn((batch, n_q_heads, head_dim), device="cuda", dtype=torch.float16, generator=g)
    k = torch.randn((batch, n_kv_heads, length, head_dim), device="cuda", dtype=torch.float16, generator=g)
    v = torch.randn_like(k)
    lens = np.full(batch, length, dtype=np.int32)
    kr = k.double().repeat_interleave(group, dim=1)
    vr = v.double().repeat_interleave(group, dim=1)
    p = torch.softmax((kr @ q.double().unsqueeze(-1)).squeeze(-1) / math.sqrt(head_dim), dim=-1)
    return q, k, v, lens, (p.unsqueeze(-1) * vr).sum(dim=2)


def checked_plan(q, k, v, lens, out, ref, label: str, **kwargs):
    """An attention.Fa2Decode plan, run once into a NaN-poisoned `out` and checked against `ref` (max abs error <
    4e-3, fp16 storage); returns (plan, error)."""
    plan = attention.Fa2Decode(q, k, v, lens, out, **kwargs)
    out.fill_(float("nan"))
    plan.launch()
    torch.cuda.synchronize()
    err = float((out.double() - ref).abs().max())
    if not err < 4e-3:
        raise RuntimeError(f"{label}: error {err}")
    return plan, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--lengths", nargs="*", type=int, default=list(LENGTHS))
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--shapes", nargs="*", default=[],
                    help="extra shapes beside --models, each HQ,HKV,D[,BATCH] (e.g. 32,32,128 for MHA)")
    args = ap.parse_args()
    shapes = []  # (name, q heads, kv heads, head dim, batch)
    for name in args.models:
        m = get_model(name)
        shapes.append((name, m.n_q_heads, m.n_kv_heads, m.head_dim, 1))
    for spec in args.shapes:
        hq, hkv, d, *b = (int(x) for x in spec.split(","))
        shapes.append((f"{hq}/{hkv}/{d} x{b[0] if b else 1}", hq, hkv, d, b[0] if b else 1))
    rows = []
    with cuda.Timer() as timer:
        for name, n_q_heads, n_kv_heads, head_dim, batch in shapes:
            group = n_q_heads // n_kv_heads
            for length in args.lengths:
                q, k, v, lens, ref = attention_case(batch, n_q_heads, n_kv_heads, head_dim, length)
                out = torch.empty_like(q)
                q4 = q.unsqueeze(2)
                sdpa_us = float(np.median(timer.callable(
                    lambda: F.scaled_dot_product_attention(q4, k, v, enable_gqa=True), warmup=20,
                    iterations=args.iterations)))
                kv_bytes = 2 * k.numel() * 2
                row = {"model": name, "length": length, "sdpa_us": sdpa_us, "kv_bytes": kv_bytes, "variants": []}
                auto = attention.Fa2Decode(q, k, v, lens, out)
                row["auto"] = {"variant": auto.variant, "heads_per_block": auto.heads_per_block,
                               "num_splits": auto.num_splits}
                choices = [{"variant": "simt", "heads_per_block": hpb} for hpb in (1, 2, 4, 8)
                           if hpb == 1 or hpb // 2 < group]
                mma_splits = attention.Fa2Decode(q, k, v, lens, out, variant="mma").num_splits
                choices += [{"variant": "mma"}, {"variant": "mma", "num_splits": max(1, mma_splits // 2)},
                            {"variant": "mma", "num_splits": min(128, 2 * mma_splits)}]
                for kwargs in choices:
                    plan, err = checked_plan(q, k, v, lens, out, ref, f"{name} S={length} {kwargs}", **kwargs)
                    us = float(np.median(timer.events(plan.op, warmup=20, iterations=args.iterations)))
                    row["variants"].append({"variant": plan.variant, "hpb": plan.heads_per_block,
                                            "splits": plan.num_splits, "us": us, "max_abs_error": err})
                auto_us = float(np.median(timer.events(auto.op, warmup=20, iterations=args.iterations)))
                row["auto"]["us"] = auto_us
                best = min(row["variants"], key=lambda x: x["us"])
                row["best"] = best
                rows.append(row)
                print(f"{name:13s} S={length:6d} sdpa {sdpa_us:7.2f} | auto {auto_us:7.2f} ({auto.variant} "
                      f"h{auto.heads_per_block} x{auto.num_splits}) sdpa/auto {sdpa_us / auto_us:.2f} | best "
                      f"{best['us']:7.2f} ({best['variant']} h{best['hpb']} x{best['splits']}) | "
                      + " ".join(f"{x['variant'][0]}{x['hpb']}x{x['splits']}:{x['us']:.2f}" for x in row["variants"])
                      + f" | auto {kv_bytes / auto_us / 1e3:.0f} GB/s", flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
