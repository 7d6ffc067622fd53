"""fa2_decode's split count swept on the kernels suite's model shapes: for each kernel (SIMT at its default heads
per block, tensor cores) every power-of-two split count from 1 up to the kernel's split limit (and no split
shorter than one block step) and the default count, timed with CUDA events (L2 flushed; median of `--iterations`
after 20 warm-ups) and in CUDA graphs (replay time / launches, L2 warm, as inside the GPU engine's step), with the
splits merged in the attention kernel ("block") and/or by the merge kernel ("kernel"). Every choice is first
checked against a float64 reference. The evidence for fa2_default_num_splits and the default merge
(src/cuda/fa2_decode.cu). Prints one line per (model, length, kernel, merge) and writes JSON.

    python tools/sweep_fa2_splits.py --out fa2_splits.json [--md fa2_splits.md] [--models ...] [--lengths ...]
                                     [--kernels simt mma] [--merges block kernel]
    python tools/sweep_fa2_splits.py --from-json fa2_splits.json --md fa2_splits.md   (table of an earlier run)
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

LENGTHS = (64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
MODELS = ("SmolLM2-135M", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Llama-3.1-8B")
GRAPH_LAUNCHES = 20
GRAPH_REPLAYS = 20


def split_choices(length: int, keys_per_step: int, max_splits: int) -> list[int]:
    """1, 2, 4, ... while every split keeps at least one block step of keys, up to the op's limit."""
    out, n = [], 1
    while n <= max_splits and (n == 1 or math.ceil(length / n) >= keys_per_step):
        out.append(n)
        n *= 2
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON of the measurements")
    ap.add_argument("--md", help="markdown table of the measurements")
    ap.add_argument("--from-json", help="only write --md from this earlier --out")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--lengths", nargs="*", type=int, default=list(LENGTHS))
    ap.add_argument("--kernels", nargs="*", choices=("simt", "mma"), default=["simt", "mma"])
    ap.add_argument("--merges", nargs="*", choices=("block", "kernel"), default=["block"])
    ap.add_argument("--iterations", type=int, default=60)
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)
    else:
        if not args.out:
            ap.error("--out is required unless --from-json is given")
        rows = measure(args)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """One table row per (model, length, kernel, merge): events / graph us per split count; the default marked *, the
    fastest of each mode in bold."""
    counts = sorted({x["splits"] for r in rows for x in r["splits"]})
    lines = ["| model | keys | kernel | merge | default | " + " | ".join(f"x{n}" for n in counts) + " |",
             "|---|---|---|---|---|" + "---|" * len(counts)]
    for r in rows:
        by = {x["splits"]: x for x in r["splits"]}
        best_e = min(by.values(), key=lambda x: x["events_us"])["splits"]
        best_g = min(by.values(), key=lambda x: x["graph_us"])["splits"]
        cells = []
        for n in counts:
            if n not in by:
                cells.append("")
                continue
            e = f"{by[n]['events_us']:.2f}"
            g = f"{by[n]['graph_us']:.2f}"
            mark = "*" if n == r["default_splits"] else ""
            cells.append(f"{mark}{'**' + e + '**' if n == best_e else e} / {'**' + g + '**' if n == best_g else g}")
        kernel = "mma" if r["variant"] == "mma" else f"simt h{r['hpb']}"
        default = f"x{r['default_splits']} {r.get('default_merge', 'block')}"
        lines.append(f"| {r['model']} | {r['length']} | {kernel} | {r.get('merge', 'block')} | {default} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace) -> list[dict]:
    import torch  # the device's; only the measurement needs it (and the built package)

    from edgellm_ext import attention, cuda
    from edgellm_ext.models import get_model
    from sweep_fa2 import attention_case, checked_plan  # tools/, beside this script

    rows = []
    with cuda.Timer() as timer:
        for name in args.models:
            m = get_model(name)
            for length in args.lengths:
                q, k, v, lens, ref = attention_case(1, m.n_q_heads, m.n_kv_heads, m.head_dim, length)
                out = torch.empty_like(q)
                for variant in args.kernels:
                    try:
                        auto = attention.Fa2Decode(q, k, v, lens, out, variant=variant)
                    except ValueError:  # the tensor-core kernel does not take this shape
                        continue
                    # Keys per block step: SIMT geometry (fa2_decode.cu keys_per_block_step), 64 for tensor cores.
                    vecs = m.head_dim // 8
                    lanes = min(32, 1 << (vecs - 1).bit_length())
                    warps = 4 if auto.heads_per_block >= 4 or m.head_dim * auto.heads_per_block * 32 > 32768 else 8
                    step = 64 if variant == "mma" else warps * (32 // lanes) * 4
                    for merge in args.merges:
                        row = {"model": name, "length": length, "variant": variant, "hpb": auto.heads_per_block,
                               "default_splits": auto.num_splits, "default_merge": auto.merge, "merge": merge,
                               "keys_per_step": step, "splits": []}
                        # The default too where it is not a power of two (the tensor-core rule's).
                        choices = sorted(set(split_choices(length, step, attention.MAX_SPLITS)) | {auto.num_splits})
                        for splits in choices:
                            if splits == 1 and merge == "kernel":
                                continue  # nothing to merge
                            plan, err = checked_plan(q, k, v, lens, out, ref,
                                                     f"{name} S={length} {variant} x{splits} {merge}",
                                                     variant=variant, num_splits=splits, merge=merge)
                            events = float(np.median(timer.events(plan.op, warmup=20, iterations=args.iterations)))
                            graph = float(np.median(timer.graph(plan.op, launches_per_graph=GRAPH_LAUNCHES,
                                                                warmup=3, replays=GRAPH_REPLAYS)))
                            row["splits"].append({"splits": splits, "events_us": events, "graph_us": graph,
                                                  "max_abs_error": err})
                        if not row["splits"]:
                            continue
                        rows.append(row)
                        best_e = min(row["splits"], key=lambda x: x["events_us"])
                        best_g = min(row["splits"], key=lambda x: x["graph_us"])
                        print(f"{name:13s} S={length:6d} {variant} h{auto.heads_per_block} {merge:6s} default "
                              f"x{auto.num_splits} {auto.merge} | best events x{best_e['splits']} "
                              f"{best_e['events_us']:.2f} | best graph x{best_g['splits']} {best_g['graph_us']:.2f} | "
                              + " ".join(f"x{x['splits']}:{x['events_us']:.2f}/{x['graph_us']:.2f}"
                                         for x in row["splits"]), flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
