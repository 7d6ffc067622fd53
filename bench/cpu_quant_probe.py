"""Hand-run probe (not a test, not a suite): CPU quantized matvec timings, kernel-only (inputs prepared once, no
checks inside the timed call: check_scales=False / TernaryMatrix), median over repetitions after a warm-up.

    python bench/cpu_quant_probe.py [--sizes 2048 4096] [--reps 30] [--threads 1 2]

Prints one line per (kernel, size, threads): median and interquartile range in microseconds, and GB/s of weight
bytes read. The main benchmark harness (bench/run.py) will wire a proper suite; these numbers are for a report.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import edgellm_ext
from edgellm_ext import cpu, quant, ternary


def _time_us(fn, reps: int) -> tuple[float, float, float]:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float(med), float(q1), float(q3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    info = edgellm_ext.build_info()
    print(f"# {platform.processor() or platform.machine()}, simd={info['simd']}, numpy {np.__version__}, "
          f"edgellm_ext {info['version']} ({info['build_type']})")
    print(f"{'kernel':34s} {'size':>11s} {'thr':>3s} {'median_us':>10s} {'iqr_us':>15s} {'weight_GB/s':>11s}")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        w = rng.standard_normal((n, n)).astype(np.float32)
        x = rng.standard_normal(n).astype(np.float32)
        y = np.empty(n, dtype=np.float32)
        rows: list[tuple[str, int, callable, int]] = []
        rows.append(("numpy f32 (w @ x)", 1, lambda: np.matmul(w, x, out=y), w.nbytes))
        rows.append(("edgellm cpu.matvec f32", 1, lambda: cpu.matvec(w, x, out=y), w.nbytes))
        for qt in ("q4_0", "q4_1", "q8_0"):
            wb = quant.quantize(w, qt)
            for act in ("f32", "q8_0"):
                for t in args.threads:
                    rows.append((
                        f"quant {qt} x {act}", t,
                        lambda wb=wb, qt=qt, act=act, t=t: quant.matvec(
                            wb, qt, x, activations=act, n_threads=t, check_scales=False, out=y),
                        wb.nbytes,
                    ))
        tm = ternary.TernaryMatrix.from_float(w)
        for method in ("lut_int8", "lut", "decode"):
            for t in args.threads:
                rows.append((f"ternary {method}", t,
                             lambda method=method, t=t: tm.matvec(x, method=method, n_threads=t, out=y),
                             tm.packed.nbytes))
        for name, t, fn, nbytes in rows:
            med, q1, q3 = _time_us(fn, args.reps)
            print(f"{name:34s} {f'{n}x{n}':>11s} {t:3d} {med:10.1f} {f'[{q1:.0f}, {q3:.0f}]':>15s} "
                  f"{nbytes / med / 1e3:11.2f}")


if __name__ == "__main__":
    main()
