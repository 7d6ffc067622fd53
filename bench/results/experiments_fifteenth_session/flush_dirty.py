"""Fifteenth session, call 5: does the L2 flush of the events timing (a memset of 4x the L2 size, which leaves the
L2 full of dirty lines) charge the timed kernel for writing those lines back? Each op timed with CUDA events
around its launch (median of 100, after 10 warm-ups) three ways:
  memset        - the suite's flush (edgellm_ext's L2Flusher, as in ../shared/reference/anchors.md);
  memset+read   - the same memset, then a kernel that reads another 4x-L2 buffer (the L2 then holds clean lines
                  of that buffer: the timed op's data is still not in L2, but evicting costs no write-back);
  warm          - no flush (the op's own data from the previous launch may be in L2).
Ops: a read-once kernel (_core.ColdReadOp) of the bytes T-MAC reads on SmolLM2 qkv, 4096x4096 and 14336x4096 and
of the fp16 14336x4096 matrix; T-MAC "stream" on 4096x4096 and 14336x4096; the fp16 GEMV on 14336x4096.

    python flush_dirty.py [--out flush_dirty.json]
"""

import argparse
import json

import numpy as np

from edgellm_ext import _core, cuda, gemv, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize

parser = argparse.ArgumentParser()
parser.add_argument("--out")
args = parser.parse_args()

flusher = _core.L2Flusher()
clean_src = cuda.empty((flusher.nbytes,), "uint8")
clean_src.owner.fill_bytes(0, 0)
sink = cuda.empty((16,), "uint8")
cleaner = _core.ColdReadOp(clean_src.address, flusher.nbytes, sink.address)
keep = []


def cold_read(nbytes):
    src = cuda.empty((nbytes,), "uint8")
    src.owner.fill_bytes(0, 0)
    keep.append(src)
    return _core.ColdReadOp(src.address, nbytes, sink.address)


def tmac_stream(m, k):
    w_t, scale = ternary_quantize(np.random.default_rng(m).standard_normal((m, k), dtype=np.float32))
    weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
    x = cuda.from_host(np.random.default_rng(1).standard_normal((1, k)).astype(np.float16))
    out = cuda.empty((1, m), "float16")
    keep.extend([weights, x, out])
    return weights.prepare(x, out, variant="stream")


def gemv_fp16(m, k):
    rng = np.random.default_rng(2)
    w = cuda.from_host(rng.standard_normal((m, k)).astype(np.float16))
    x = cuda.from_host(rng.standard_normal((k,)).astype(np.float16))
    out = cuda.empty((m,), "float16")
    keep.extend([w, x, out])
    return gemv.prepare_gemv(x, w, out=out)


ops = {
    "cold read 143232 B (T-MAC smol_qkv)": cold_read(143232),
    "cold read 4218880 B (T-MAC 4096x4096)": cold_read(4218880),
    "cold read 14745600 B (T-MAC 14336x4096)": cold_read(14745600),
    "cold read 117440512 B (fp16 14336x4096)": cold_read(117440512),
    "tmac stream 4096x4096": tmac_stream(4096, 4096),
    "tmac stream 14336x4096": tmac_stream(14336, 4096),
    "gemv fp16 14336x4096": gemv_fp16(14336, 4096),
}


def timed(op, mode, iterations=100, warmup=10):
    ev = _core.EventPair()
    times = []
    for i in range(warmup + iterations):
        if mode != "warm":
            flusher.flush(0)
        if mode == "memset+read":
            cleaner.launch(0)
        ev.record_start(0)
        op.launch(0)
        ev.record_stop(0)
        t = ev.elapsed_us()
        if i >= warmup:
            times.append(t)
    return float(np.median(times))


results = []
for name, op in ops.items():
    row = {"op": name}
    for mode in ("memset", "memset+read", "warm"):
        row[mode] = timed(op, mode)
    results.append(row)
    print(f"{name:42s} memset {row['memset']:8.2f}  memset+read {row['memset+read']:8.2f}  warm {row['warm']:8.2f} us",
          flush=True)
if args.out:
    with open(args.out, "w") as f:
        json.dump({"timing": "median us of 100 event-timed launches", "results": results}, f, indent=1)
