"""GPU kernel measurements, taken side by side with the peer a user would otherwise call, in one run.

Everything here is *kernel-only*: one operation timed with CUDA events (L2 flushed before each timed launch,
see :class:`edgellm_ext.cuda.Timer`) or per launch inside a CUDA graph; no host copy is ever inside a timed
region. The peers (torch SDPA, cuBLAS through ``torch.nn.functional.linear``) get the same events, the same
flush and the same counts. Every operation is checked against a float64 result of the same inputs before it is
timed: a benchmark of a wrong kernel is worthless. These functions return raw per-launch samples (microseconds);
``bench/suites/kernels.py`` turns them into labelled results with the statistics of :mod:`edgellm_ext.stats`.
torch is needed (it makes the inputs and runs the peers); it is imported inside each function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core, attention, cuda

__all__ = ["GEMV_SHAPES", "AttentionCase", "attention_samples", "copy_bandwidth_samples", "gemv_samples",
           "timer_floor_samples"]

# (out features M, in features K) of the projections the anchors measure (../shared/reference/anchors.md).
GEMV_SHAPES = {
    "smol_qkv": (960, 576),
    "smol_o": (576, 576),
    "smol_gateup": (3072, 576),
    "smol_down": (576, 1536),
    "smol_lmhead": (49152, 576),
    "qwen05_gateup": (9728, 896),
    "qwen05_down": (896, 4864),
    "qwen15_gateup": (17920, 1536),
    "qwen15_down": (1536, 8960),
    "big_4096": (4096, 4096),  # Llama-3.1-8B's o-projection
    "big_14336x4096": (14336, 4096),  # Llama-3.1-8B's gate or up projection
    "llama8b_qkv": (6144, 4096),
    "llama8b_down": (4096, 14336),
    "llama8b_lmhead": (128256, 4096),
}

GRAPH_LAUNCHES = 20  # launches captured per graph when timing per-launch cost inside a CUDA graph


def timer_floor_samples(timer: cuda.Timer, *, warmup: int, iterations: int) -> dict[str, np.ndarray]:
    """The harness's own floor: an empty kernel timed with events, and per node inside a 100-launch graph."""
    op = _core.NullKernelOp()
    return {"events": timer.events(op, warmup=warmup, iterations=iterations),
            "graph": timer.graph(op, launches_per_graph=100, warmup=3, replays=max(10, iterations // 10))}


def cold_read_samples(timer: cuda.Timer, nbytes: int, *, warmup: int, iterations: int) -> np.ndarray:
    """Events-timed samples (us, L2 flushed) of a kernel that only reads `nbytes` (rounded up to 16) once, one
    16-byte load per thread (_core.ColdReadOp): the floor for any kernel that must read that many bytes."""
    nbytes = max(16, -(-int(nbytes) // 16) * 16)
    src = cuda.empty((nbytes,), "uint8")
    src.owner.fill_bytes(0, 0)  # zeros: the kernel's store (of an all-ones vector) never happens
    sink = cuda.empty((16,), "uint8")
    op = _core.ColdReadOp(src.address, nbytes, sink.address)
    return timer.events(op, warmup=warmup, iterations=iterations)


def copy_bandwidth_samples(timer: cuda.Timer, *, nbytes: int = 1 << 30, iterations: int = 20) -> np.ndarray:
    """Device-to-device copy bandwidth samples in GB/s (bytes read + written per second / 1e9)."""
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    times_us = timer.callable(lambda: dst.copy_(src), warmup=3, iterations=iterations)
    return 2 * src.numel() / (times_us * 1e-6) / 1e9


@dataclass(frozen=True)
class AttentionCase:
    model: str
    q_heads: int
    kv_heads: int
    head_dim: int
    seq_len: int
    batch: int = 1

    @property
    def kv_bytes(self) -> int:
        """fp16 K and V bytes the kernel must read (the memory-traffic floor)."""
        return 2 * self.batch * self.kv_heads * self.seq_len * self.head_dim * 2


def _graph_samples_torch(fn: Any, timer: cuda.Timer, replays: int) -> np.ndarray:
    import torch

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_LAUNCHES):
            fn()
    return timer.callable(graph.replay, warmup=3, iterations=replays) / GRAPH_LAUNCHES


def attention_samples(case: AttentionCase, timer: cuda.Timer, *, warmup: int, iterations: int,
                      sweep_heads_per_block: bool) -> dict[str, Any]:
    """fa2_decode and torch SDPA (enable_gqa=True) on the same fp16 tensors: event samples (cold L2), graph samples
    (per launch), and with the sweep, fa2 at every heads-per-block choice (the evidence for the dispatch rule)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device="cuda").manual_seed(case.seq_len * 131 + case.q_heads)
    kv_shape = (case.batch, case.kv_heads, case.seq_len, case.head_dim)
    q = torch.randn((case.batch, case.q_heads, case.head_dim), device="cuda", dtype=torch.float16, generator=g)
    k = torch.randn(kv_shape, device="cuda", dtype=torch.float16, generator=g)
    v = torch.randn(kv_shape, device="cuda", dtype=torch.float16, generator=g)
    out = torch.empty_like(q)
    lengths = np.full(case.batch, case.seq_len, dtype=np.int32)
    plan = attention.Fa2Decode(q, k, v, lengths, out)
    q4 = q.unsqueeze(2)

    def sdpa() -> object:
        return F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)

    out.fill_(float("nan"))
    torch.cuda.synchronize()
    plan.launch()
    torch.cuda.synchronize()
    group = case.q_heads // case.kv_heads
    kr, vr = k.double().repeat_interleave(group, dim=1), v.double().repeat_interleave(group, dim=1)
    p = torch.softmax((kr @ q.double().unsqueeze(-1)).squeeze(-1) / math.sqrt(case.head_dim), dim=-1)
    ref = (p.unsqueeze(-1) * vr).sum(dim=2)
    max_err = float((out.double() - ref).abs().max())
    if not max_err < 4e-3:  # fp16 output rounding of values below ~4 is < 2e-3
        raise RuntimeError(f"{case}: fa2_decode differs from the float64 reference by {max_err}")

    replays = max(10, iterations // 10)
    result: dict[str, Any] = {
        "max_abs_error": max_err,
        "num_splits": plan.num_splits,
        "heads_per_block": plan.heads_per_block,
        "variant": plan.variant,
        "fa2": timer.events(plan.op, warmup=warmup, iterations=iterations),
        "sdpa": timer.callable(sdpa, warmup=warmup, iterations=iterations),
        "fa2_graph": timer.graph(plan.op, launches_per_graph=GRAPH_LAUNCHES, warmup=3, replays=replays),
        "sdpa_graph": _graph_samples_torch(sdpa, timer, replays),
        "by_heads_per_block": {},
    }
    if sweep_heads_per_block:
        for hpb in (1, 2, 4, 8):
            if hpb > 1 and hpb // 2 >= group:
                continue  # more heads per block than the group has: the same work as the smaller choice
            variant = attention.Fa2Decode(q, k, v, lengths, out, heads_per_block=hpb)
            result["by_heads_per_block"][hpb] = (variant.num_splits,
                                                 timer.events(variant.op, warmup=warmup, iterations=iterations))
    return result


def gemv_samples(name: str, timer: cuda.Timer, *, warmup: int, iterations: int) -> dict[str, Any]:
    """One projection shape, batch 1, fp16 activations: cuBLAS fp16 GEMV (``F.linear``) beside our fp16 GEMV, the
    fused RMSNorm+GEMV, RMSNorm then GEMV (two launches), and the ternary T-MAC GEMV of the same logical shape."""
    import torch
    import torch.nn.functional as F

    from . import gemv, tmac
    from .formats import pack_ternary, ternary_quantize

    m, k = GEMV_SHAPES[name]
    g = torch.Generator(device="cuda").manual_seed(m * 7 + k)
    w = (torch.randn((m, k), device="cuda", generator=g) / math.sqrt(k)).half()
    x = torch.randn((1, k), device="cuda", generator=g).half()
    gamma = (1 + 0.1 * torch.randn((k,), device="cuda", generator=g)).half()
    out = torch.empty((1, m), device="cuda", dtype=torch.float16)
    eps = 1e-5

    w64, x64, g64 = w.double(), x.double(), gamma.double()
    xn64 = x64 / torch.sqrt((x64 * x64).mean(dim=-1, keepdim=True) + eps) * g64
    w_t, scale = ternary_quantize(w.float().cpu().numpy())
    weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
    ops: dict[str, Any] = {
        "gemv": (gemv.prepare_gemv(x, w, out=out), x64 @ w64.T),
        "fused": (gemv.prepare_fused_rmsnorm_matmul(x, gamma, w, eps=eps, out=out), xn64 @ w64.T),
        "rmsnorm_then_gemv": (gemv.prepare_rmsnorm_then_gemv(x, gamma, w, eps=eps, out=out), xn64 @ w64.T),
        "tmac": (weights.prepare(x, out),
                 (x64 @ torch.from_numpy(w_t).cuda().double().T) * torch.from_numpy(scale).cuda().double()),
    }
    torch.cuda.synchronize()
    result: dict[str, Any] = {"m": m, "k": k, "fp16_weight_bytes": m * k * 2, "tmac_variant": ops["tmac"][0].variant,
                              "ternary_packed_bytes": weights.packed_bytes, "max_rel_error": {}}
    for key, (op, ref) in ops.items():
        out.fill_(float("nan"))
        torch.cuda.synchronize()
        op.launch(0)
        torch.cuda.synchronize()
        err = float((out.double() - ref).abs().max() / ref.abs().max())
        if not err < 1e-2:  # fp16 output rounding (2**-11) plus fp32 accumulation, relative to the largest output
            raise RuntimeError(f"{name}: {key} differs from the float64 reference by {err:.3g} (relative to max)")
        result["max_rel_error"][key] = err
    def linear() -> object:
        return F.linear(x, w)

    replays = max(10, iterations // 10)
    result["cublas"] = timer.callable(linear, warmup=warmup, iterations=iterations)
    result["cublas_graph"] = _graph_samples_torch(linear, timer, replays)
    for key, (op, _) in ops.items():
        result[key] = timer.events(op, warmup=warmup, iterations=iterations)
        result[f"{key}_graph"] = timer.graph(op, launches_per_graph=GRAPH_LAUNCHES, warmup=3, replays=replays)
    return result
