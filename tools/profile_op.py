"""Launch one prepared GPU op once, for a profiler (ncu) to capture: `ncu ... python tools/profile_op.py tmac 14336 4096`.

ops: tmac M K [VARIANT_INDEX: 0 auto, 1 mma, 2 stream] (fp16 x, batch 1), gemv M K,
fa2 HQ HKV D S [VARIANT_INDEX: 0 auto, 1 simt, 2 mma], sdpa HQ HKV D S (torch, the anchor)."""

import sys

import numpy as np
import torch

from edgellm_ext import attention, gemv, tmac
from edgellm_ext.formats import pack_ternary, ternary_quantize

kind, dims = sys.argv[1], [int(v) for v in sys.argv[2:]]
if kind == "tmac":
    m, k = dims[:2]
    variant = ("auto", "mma", "stream")[dims[2] if len(dims) > 2 else 0]
    w_t, scale = ternary_quantize(np.random.default_rng(0).standard_normal((m, k), dtype=np.float32))
    weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
    x = torch.randn((1, k), device="cuda").half()
    op = weights.prepare(x, torch.empty((1, m), device="cuda", dtype=torch.float16), variant=variant)
elif kind == "gemv":
    m, k = dims
    w = torch.randn((m, k), device="cuda").half()
    x = torch.randn((1, k), device="cuda").half()
    op = gemv.prepare_gemv(x, w, out=torch.empty((1, m), device="cuda", dtype=torch.float16))
elif kind in ("fa2", "sdpa"):
    hq, hkv, d, s = dims[:4]
    q = torch.randn((1, hq, d), device="cuda").half()
    kv = torch.randn((1, hkv, s, d), device="cuda").half()
    v = kv.clone()
    if kind == "fa2":
        variant = ("auto", "simt", "mma")[dims[4] if len(dims) > 4 else 0]
        op = attention.Fa2Decode(q, kv, v, np.array([s], dtype=np.int32), variant=variant).op
    else:
        class _Sdpa:
            def launch(self, _stream: int) -> None:
                torch.nn.functional.scaled_dot_product_attention(q.unsqueeze(2), kv, v, enable_gqa=True)
        op = _Sdpa()
else:
    raise SystemExit(f"unknown op {kind!r}: tmac, gemv, fa2 or sdpa")
torch.cuda.synchronize()
for _ in range(3):
    op.launch(0)
torch.cuda.synchronize()
