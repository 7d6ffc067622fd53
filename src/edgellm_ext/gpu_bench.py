"""GPU kernel benchmarks, measured side by side with the peer a user would otherwise call, in one run.

Everything here is *kernel-only*: one operation timed with CUDA events (L2 flushed before each timed launch) or
per launch inside a CUDA graph; no host copies are ever inside a timed region. The peers (torch SDPA, cuBLAS via
``torch.nn.functional.linear``) are timed with the same events, the same flush and the same counts; torch is
optional (without it, the peer columns say why they are missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np

from . import attention, cuda

__all__ = ["ATTENTION_MODELS", "CACHE_LENGTHS", "AttentionCase", "attention_cases", "copy_bandwidth_gb_s",
           "iter_attention", "measure_attention", "ratio_with_spread", "summarize", "timer_floor"]

# (q heads, kv heads, head_dim) from ../shared/reference/models.md.
ATTENTION_MODELS = {
    "SmolLM2-135M": (9, 3, 64),
    "Qwen2.5-0.5B": (14, 2, 64),
    "Qwen2.5-1.5B": (12, 2, 128),
    "Llama-3.1-8B": (32, 8, 128),
}
CACHE_LENGTHS = (64, 256, 1024, 4096, 16384, 65536)


def summarize(samples_us: np.ndarray) -> dict[str, float]:
    """Median, quartiles and extremes of per-launch times (microseconds)."""
    s = np.asarray(samples_us, dtype=np.float64)
    return {
        "median_us": float(np.median(s)),
        "p25_us": float(np.percentile(s, 25)),
        "p75_us": float(np.percentile(s, 75)),
        "p95_us": float(np.percentile(s, 95)),
        "min_us": float(s.min()),
        "max_us": float(s.max()),
        "n": int(s.size),
    }


def ratio_with_spread(peer_us: np.ndarray, ours_us: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """peer median / our median (a speedup: > 1 means we are faster) with a 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    peer, ours = np.asarray(peer_us), np.asarray(ours_us)
    boot = np.median(rng.choice(peer, (resamples, peer.size)), axis=1) / np.median(
        rng.choice(ours, (resamples, ours.size)), axis=1)
    return {"speedup": float(np.median(peer) / np.median(ours)),
            "speedup_ci95_low": float(np.percentile(boot, 2.5)),
            "speedup_ci95_high": float(np.percentile(boot, 97.5))}


def timer_floor(timer: cuda.Timer, *, warmup: int, iterations: int) -> dict[str, Any]:
    """The harness's own floor: an empty kernel timed with events, and per node inside a 100-launch graph."""
    from . import _core

    op = _core.NullKernelOp()
    return {"events": summarize(timer.events(op, warmup=warmup, iterations=iterations)),
            "graph_per_launch": summarize(timer.graph(op, launches_per_graph=100, warmup=3, replays=max(10, iterations // 10)))}


def copy_bandwidth_gb_s(timer: cuda.Timer, *, nbytes: int = 1 << 30, iterations: int = 20) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second / 1e9), measured now, median."""
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    times = timer.callable(lambda: dst.copy_(src), warmup=3, iterations=iterations)
    return float(2 * src.numel() / (np.median(times) * 1e-6) / 1e9)


@dataclass(frozen=True)
class AttentionCase:
    model: str
    q_heads: int
    kv_heads: int
    head_dim: int
    seq_len: int
    batch: int = 1
    dtype: str = "float16"

    @property
    def kv_bytes(self) -> int:
        return 2 * self.batch * self.kv_heads * self.seq_len * self.head_dim * 2


def attention_cases(models: Optional[list[str]] = None, lengths: Optional[tuple[int, ...]] = None) -> list[AttentionCase]:
    chosen = models or list(ATTENTION_MODELS)
    unknown = [m for m in chosen if m not in ATTENTION_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; valid: {sorted(ATTENTION_MODELS)}")
    return [AttentionCase(m, *ATTENTION_MODELS[m], seq_len=s) for m in chosen for s in (lengths or CACHE_LENGTHS)]


def _time_both(timer: cuda.Timer, ours_op: Any, peer_fn: Optional[Callable[[], object]], warmup: int,
               iterations: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    ours = timer.events(ours_op, warmup=warmup, iterations=iterations)
    peer = timer.callable(peer_fn, warmup=warmup, iterations=iterations) if peer_fn is not None else None
    return ours, peer


def measure_attention(case: AttentionCase, timer: cuda.Timer, *, warmup: int, iterations: int,
                      copy_gb_s: Optional[float], sweep_heads_per_block: bool = True) -> dict[str, Any]:
    """fa2_decode vs torch SDPA (enable_gqa=True) on the same fp16 tensors: cold-L2 event times, graph times, GB/s."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator(device="cuda").manual_seed(case.seq_len * 131 + case.q_heads)
    shape_kv = (case.batch, case.kv_heads, case.seq_len, case.head_dim)
    q = torch.randn((case.batch, case.q_heads, case.head_dim), device="cuda", dtype=torch.float16, generator=g)
    k = torch.randn(shape_kv, device="cuda", dtype=torch.float16, generator=g)
    v = torch.randn(shape_kv, device="cuda", dtype=torch.float16, generator=g)
    out = torch.empty_like(q)
    plan = attention.Fa2Decode(q, k, v, np.full(case.batch, case.seq_len, dtype=np.int32), out)
    q4 = q.unsqueeze(2)

    def sdpa() -> object:
        return F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)

    # Same answer before timing anything (a benchmark of a wrong kernel is worthless).
    plan.launch()
    torch.cuda.synchronize()
    ref = sdpa().squeeze(2)
    max_err = float((out.float() - ref.float()).abs().max())
    if not max_err < 2e-2:
        raise RuntimeError(f"{case}: fa2_decode differs from SDPA by {max_err}")

    ours, peer = _time_both(timer, plan.op, sdpa, warmup, iterations)
    ours_graph = timer.graph(plan.op, launches_per_graph=20, warmup=3, replays=max(10, iterations // 10))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(20):
            sdpa()
    peer_graph = timer.callable(graph.replay, warmup=3, iterations=max(10, iterations // 10)) / 20

    # The evidence behind fa2_default_heads_per_block: every heads-per-block choice, same tensors, same method.
    by_hpb: dict[str, Any] = {}
    if sweep_heads_per_block:
        for hpb in (1, 2, 4, 8):
            if hpb > 1 and hpb // 2 >= case.q_heads // case.kv_heads:
                continue  # more heads per block than the group has: same work as the smaller choice
            variant = attention.Fa2Decode(q, k, v, np.full(case.batch, case.seq_len, dtype=np.int32), out,
                                          heads_per_block=hpb)
            by_hpb[str(hpb)] = {"num_splits": variant.num_splits,
                                **summarize(timer.events(variant.op, warmup=warmup, iterations=iterations))}

    result: dict[str, Any] = {
        "kind": "kernel-only",
        "case": case.__dict__,
        "num_splits": plan.num_splits,
        "heads_per_block": plan.heads_per_block,
        "fa2_by_heads_per_block": by_hpb,
        "max_abs_diff_vs_sdpa": max_err,
        "fa2_decode": summarize(ours),
        "sdpa": summarize(peer) if peer is not None else None,
        "fa2_decode_graph": summarize(ours_graph),
        "sdpa_graph": summarize(peer_graph),
        "kv_bytes": case.kv_bytes,
        "fa2_gb_s": case.kv_bytes / (np.median(ours) * 1e-6) / 1e9,
    }
    if peer is not None:
        result.update(ratio_with_spread(peer, ours))
        result["sdpa_gb_s"] = case.kv_bytes / (np.median(peer) * 1e-6) / 1e9
    if copy_gb_s:
        result["fa2_pct_of_copy_bw"] = 100.0 * result["fa2_gb_s"] / copy_gb_s
    return result


def iter_attention(cases: list[AttentionCase], timer: cuda.Timer, *, warmup: int, iterations: int,
                   copy_gb_s: Optional[float]) -> Iterator[dict[str, Any]]:
    for case in cases:
        yield measure_attention(case, timer, warmup=warmup, iterations=iterations, copy_gb_s=copy_gb_s)


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
    "big_4096": (4096, 4096),
    "big_14336x4096": (14336, 4096),
}


def measure_gemv(name: str, timer: cuda.Timer, *, warmup: int, iterations: int,
                 copy_gb_s: Optional[float]) -> dict[str, Any]:
    """One projection shape, batch 1, fp16 activations: cuBLAS fp16 GEMV (torch.nn.functional.linear) beside our
    fp16 GEMV, fused RMSNorm+GEMV, separate RMSNorm then GEMV (two launches), and the ternary T-MAC GEMV of the same
    logical shape. Each is checked against the float64 result of the same inputs before it is timed."""
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
    checks = {"gemv": x64 @ w64.T, "fused": xn64 @ w64.T}

    ops: dict[str, Any] = {
        "gemv": gemv.prepare_gemv(x, w, out=out),
        "fused": gemv.prepare_fused_rmsnorm_matmul(x, gamma, w, eps=eps, out=out),
        "rmsnorm_then_gemv": gemv.prepare_rmsnorm_then_gemv(x, gamma, w, eps=eps, out=out),
    }
    w_t, scale = ternary_quantize(w.float().cpu().numpy())
    weights = tmac.TernaryWeights(pack_ternary(w_t), scale, k)
    ops["tmac"] = weights.prepare(x, out)
    checks["tmac"] = (x64 @ torch.from_numpy(w_t).to("cuda").double().T) * torch.from_numpy(scale).to("cuda").double()
    checks["rmsnorm_then_gemv"] = checks["fused"]

    errors: dict[str, float] = {}
    for key, op in ops.items():
        out.fill_(float("nan"))
        op.launch(0)
        torch.cuda.synchronize()
        ref = checks[key]
        err = float(((out.double() - ref).abs().max() / ref.abs().max()).item())
        if not err < 2e-2:
            raise RuntimeError(f"{name}: {key} differs from the float64 reference by {err:.3g} (relative to max)")
        errors[key] = err

    def linear() -> object:
        return F.linear(x, w)

    cublas = timer.callable(linear, warmup=warmup, iterations=iterations)
    fp16_bytes = m * k * 2
    result: dict[str, Any] = {"kind": "kernel-only", "shape": {"name": name, "m": m, "k": k, "batch": 1},
                              "max_rel_error": errors, "cublas_fp16": summarize(cublas),
                              "fp16_weight_bytes": fp16_bytes, "ternary_packed_bytes": weights.packed_bytes}
    for key, op in ops.items():
        samples = timer.events(op, warmup=warmup, iterations=iterations)
        moved = weights.packed_bytes if key == "tmac" else fp16_bytes
        row = {**summarize(samples), **ratio_with_spread(cublas, samples),
               "weight_gb_s": moved / (np.median(samples) * 1e-6) / 1e9}
        if copy_gb_s:
            row["pct_of_copy_bw"] = 100.0 * row["weight_gb_s"] / copy_gb_s
        result[key] = row
    result["cublas_fp16"]["weight_gb_s"] = fp16_bytes / (np.median(cublas) * 1e-6) / 1e9
    result["fused_over_gemv"] = result["fused"]["median_us"] / result["gemv"]["median_us"]
    result["fused_over_separate"] = result["fused"]["median_us"] / result["rmsnorm_then_gemv"]["median_us"]
    return result
