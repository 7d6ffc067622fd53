"""Summarise `ncu --csv --metrics gpu__time_duration.sum` output: per kernel name, count and mean/median µs.

    ncu --csv --metrics gpu__time_duration.sum python3 ... > ncu.csv; python tools/ncu_kernel_times.py ncu.csv
"""

from __future__ import annotations

import csv
import io
import statistics
import sys
from collections import defaultdict


def main(path: str) -> int:
    text = open(path, encoding="utf-8", errors="replace").read()
    start = text.find('"ID"')
    if start < 0:
        print("no ncu CSV table found", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(text[start:])):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = row.get("Metric Unit", "")
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[unit]
        name = row["Kernel Name"]
        name = name.split("(")[0][:90] + (f" <{row.get('Grid Size', '')}>" if row.get("Grid Size") else "")
        times[name].append(value * scale)
    total = 0.0
    for name, v in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        total += sum(v)
        print(f"{len(v):6d}  mean {statistics.mean(v):8.2f} us  median {statistics.median(v):8.2f} us  {name}")
    print(f"total {total:.1f} us over {sum(len(v) for v in times.values())} kernels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
