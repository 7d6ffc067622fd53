"""GPU kernel benchmarks (kernel-only): fa2_decode vs torch SDPA over the model shapes and cache lengths, the
timer's own floor, and the device's copy bandwidth, all in one run. Writes JSON (incrementally: a crash keeps
every finished case).

    python bench/kernels_gpu.py --out bench/results/<gpu>/kernels.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import edgellm_ext
from edgellm_ext import cuda, gpu_bench

METHODOLOGY = {"version": "1.0", "warmup": 50, "iterations": 200, "l2_flush": True, "timer": "cuda-events"}


def _git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("EDGELLM_GIT_COMMIT", "unknown")


def _write(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="few iterations, two lengths (a smoke run)")
    args = parser.parse_args()
    warmup, iterations = (5, 20) if args.quick else (METHODOLOGY["warmup"], METHODOLOGY["iterations"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": " ".join([sys.executable, *sys.argv]), "git_commit": _git_commit(),
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "methodology": METHODOLOGY,
           "quick": args.quick, "build_info": edgellm_ext.build_info(), "device": cuda.device_info(),
           "host": platform.platform(), "results": {}}
    with cuda.Timer() as timer:
        doc["results"]["timer_floor"] = gpu_bench.timer_floor(timer, warmup=warmup, iterations=iterations)
        doc["results"]["copy_bandwidth_gb_s"] = gpu_bench.copy_bandwidth_gb_s(timer)
        _write(args.out, doc)
        lengths = (64, 4096) if args.quick else gpu_bench.CACHE_LENGTHS
        rows = doc["results"]["attention"] = []
        for row in gpu_bench.iter_attention(gpu_bench.attention_cases(lengths=lengths), timer, warmup=warmup,
                                            iterations=iterations, copy_gb_s=doc["results"]["copy_bandwidth_gb_s"]):
            rows.append(row)
            _write(args.out, doc)
            c = row["case"]
            print(f"{c['model']:14s} S={c['seq_len']:6d} fa2 {row['fa2_decode']['median_us']:8.2f} us  "
                  f"sdpa {row['sdpa']['median_us']:8.2f} us  x{row['speedup']:.2f} "
                  f"[{row['speedup_ci95_low']:.2f}, {row['speedup_ci95_high']:.2f}]  "
                  f"{row['fa2_gb_s']:7.0f} GB/s  splits {row['num_splits']} hpb {row['heads_per_block']}  graph "
                  f"{row['fa2_decode_graph']['median_us']:.2f} vs {row['sdpa_graph']['median_us']:.2f}  by hpb "
                  + " ".join(f"{h}:{v['median_us']:.1f}" for h, v in row["fa2_by_heads_per_block"].items()), flush=True)
        gemv_rows = doc["results"]["gemv"] = []
        for name in gpu_bench.GEMV_SHAPES:
            row = gpu_bench.measure_gemv(name, timer, warmup=warmup, iterations=iterations,
                                         copy_gb_s=doc["results"]["copy_bandwidth_gb_s"])
            gemv_rows.append(row)
            _write(args.out, doc)
            print(f"{name:15s} cublas {row['cublas_fp16']['median_us']:7.2f} us | "
                  + " | ".join(f"{key} {row[key]['median_us']:7.2f} us x{row[key]['speedup']:.2f}"
                               for key in ("gemv", "fused", "rmsnorm_then_gemv", "tmac"))
                  + f" | fused/gemv {row['fused_over_gemv']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
