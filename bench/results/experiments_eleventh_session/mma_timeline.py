"""Eleventh session experiment: where the time of fa2_decode's tensor-core kernel goes at long contexts, from the
global-timer stamps that mma_timeline_patch.py adds to a copy of the kernel. For each case: L2 flushed (a 512 MB
write), one launch, stamps read back; 7 repeats, medians printed (us, from the first block's start):
start spread, the warps' key loops (shortest / median / longest), the last block past its loop, the last
non-merging block's end, finish_block of the other blocks (median: partial, fence, counter), the merging blocks'
finish_block (the last block of each head group; the longest) and the whole kernel; plus the kernel's event time
(L2 flushed) for scale. With a build that has clusters (the cluster pre-merge, ffd9b5e), each case without
clusters (cluster 1), then with the op's default cluster size; otherwise each case once. Run with the
instrumented build first on PYTHONPATH."""
import json
import statistics
import sys

import numpy as np
import torch

from edgellm_ext import _core, attention, cuda

CASES = [  # (name, q heads, kv heads, head dim, keys, splits)
    ("SmolLM2-135M", 9, 3, 64, 65536, 32),
    ("Qwen2.5-0.5B", 14, 2, 64, 65536, 64),
    ("Qwen2.5-1.5B", 12, 2, 128, 65536, 64),
    ("Qwen2.5-1.5B", 12, 2, 128, 65536, 32),
    ("Qwen2.5-1.5B", 12, 2, 128, 16384, 32),
    ("Llama-3.1-8B", 32, 8, 128, 65536, 16),
]
NW = 4


def one(name, hq, hkv, d, keys, splits, flush, timer, cluster=None):
    torch.manual_seed(0)
    q = torch.randn((1, hq, d), device="cuda").half()
    k = torch.randn((1, hkv, keys, d), device="cuda").half()
    v = torch.randn((1, hkv, keys, d), device="cuda").half()
    blocks = splits * hkv
    buf = torch.zeros(64 + 2 * 8 * blocks, dtype=torch.int32, device="cuda")
    buf[0] = keys
    plan = attention.Fa2Decode(q, k, v, buf[:1], variant="mma", num_splits=splits)
    if cluster is not None:
        plan.op.set_cluster_size(cluster)
    stats = []
    for _ in range(7):
        flush.fill_(1.0)
        plan.launch(0)
        torch.cuda.synchronize()
        tr = buf[64:].cpu().numpy().view(np.uint64).reshape(blocks, 8).astype(np.int64)
        t0 = tr[:, 0].min()
        loops = (tr[:, 1:1 + NW] - tr[:, :1]).ravel() / 1e3
        merge = tr[:, 6] - tr[:, 5]
        # The merging block of each head group (blocks y * splits .. + splits - 1) is the one that ends last.
        last = np.zeros(blocks, dtype=bool)
        last[np.arange(0, blocks, splits) + tr[:, 6].reshape(-1, splits).argmax(axis=1)] = True
        stats.append({
            "start_spread": (tr[:, 0].max() - t0) / 1e3,
            "loop_min": loops.min(), "loop_median": float(np.median(loops)), "loop_max": loops.max(),
            "last_past_loop": (tr[:, 5].max() - t0) / 1e3,
            "last_plain_end": (tr[~last, 6].max() - t0) / 1e3 if (~last).any() else float("nan"),
            "finish_plain_median": float(np.median(merge[~last])) / 1e3 if (~last).any() else float("nan"),
            "merge": float(merge[last].max()) / 1e3,
            "merging_blocks": int(last.sum()),
            "kernel": (tr[:, 6].max() - t0) / 1e3,
        })
    med = {key: round(float(statistics.median(s[key] for s in stats)), 2) for key in stats[0]}
    events = float(np.median(timer.events(plan.op, warmup=10, iterations=40)))
    row = {"model": name, "keys": keys, "splits": splits, "blocks": blocks,
           "cluster": int(getattr(plan.op, "cluster_size", 1)), "events_us": round(events, 2), **med}
    print(json.dumps(row), flush=True)
    return row


def main():
    flush = torch.empty(128 * 1024 * 1024, dtype=torch.float32, device="cuda")
    rows = []
    has_clusters = hasattr(_core.Fa2DecodeOp, "set_cluster_size")
    with cuda.Timer() as timer:
        for case in CASES:
            for cluster in ((1, None) if has_clusters else (None,)):  # none, then the op's default
                rows.append(one(*case, flush, timer, cluster))
    if len(sys.argv) > 1:
        json.dump(rows, open(sys.argv[1], "w"), indent=1)


main()
