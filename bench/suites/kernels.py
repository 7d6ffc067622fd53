"""GPU kernels (kernel-only): fa2_decode vs torch SDPA over the model shapes and cache lengths; our GEMV, fused
RMSNorm+GEMV, separate RMSNorm+GEMV and ternary T-MAC GEMV vs cuBLAS fp16 per projection shape; the timer's own
floor and the device's copy bandwidth, all measured in this run. Issue 4's targets are reported as pass/fail rows.
"""

from __future__ import annotations

from typing import Any, Iterator

NAME = "kernels"
KIND = "kernel-only"
DESCRIPTION = "GPU kernels vs torch SDPA / cuBLAS, side by side (CUDA events, L2 flushed; CUDA graphs)"

DEFAULT_MODELS = ("SmolLM2-135M", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Llama-3.1-8B")
QUICK_GEMV = ("smol_qkv", "smol_lmhead", "big_4096")
LONG_LENGTHS = {4096, 16384, 65536}


def available(ctx: Any) -> tuple[bool, str]:
    import edgellm_ext

    if not edgellm_ext.cuda_available():
        info = edgellm_ext.build_info()
        why = "built without CUDA" if not info["cuda_compiled"] else "no CUDA device visible"
        return False, f"no GPU: {why} (edgellm_ext.cuda_available() is False)"
    try:
        import torch
    except ImportError as e:
        return False, f"torch is not importable ({e}); it makes the inputs and runs the SDPA/cuBLAS peers"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    return True, ""


def run(ctx: Any) -> Iterator[dict[str, Any]]:
    import numpy as np

    from edgellm_ext import cuda, gpu_bench
    from edgellm_ext import results as R
    from edgellm_ext.models import get_model
    from edgellm_ext.stats import median_agreement

    m = ctx.methodology
    warmup, iterations = m.warmup_iterations, m.iterations
    timing = "CUDA events around each launch, L2 flushed before each (4x L2 written)"
    with cuda.Timer() as timer:
        floor = gpu_bench.timer_floor_samples(timer, warmup=warmup, iterations=iterations)
        yield R.measurement(name="null_kernel", kind=KIND, engine="edgellm_ext", metric="latency", unit="us",
                            samples=floor["events"], params={"timing": timing})
        graph_floor = R.measurement(name="null_kernel_graph", kind=KIND, engine="edgellm_ext", metric="latency",
                                    unit="us", samples=floor["graph"],
                                    params={"timing": "per launch, 100 launches captured in one CUDA graph"})
        yield graph_floor
        yield R.target(target="harness floor: trivial op in CUDA-graph mode", threshold=2.0, unit="us",
                       measured=graph_floor["stats"]["median"], status="measured")
        copy = gpu_bench.copy_bandwidth_samples(timer)
        copy_gb_s = float(np.median(copy))
        yield R.measurement(name="device_copy", kind=KIND, engine="torch", metric="bandwidth", unit="GB/s",
                            samples=copy, params={"bytes": 1 << 30, "counted": "read + written"})

        # Reproducibility (issue 5's criterion): the same kernel measured in two consecutive runs agrees within 5%
        # at the median. Both runs are recorded.
        repro_case = gpu_bench.AttentionCase("Llama-3.1-8B", 32, 8, 128, 4096)
        runs = [gpu_bench.attention_samples(repro_case, timer, warmup=warmup, iterations=iterations,
                                            sweep_heads_per_block=False)["fa2"] for _ in range(2)]
        for i, samples in enumerate(runs):
            yield R.measurement(name=f"fa2_decode_repeat_{i + 1}", kind=KIND, engine="edgellm_ext", metric="latency",
                                unit="us", samples=samples, model=repro_case.model,
                                params={"seq_len": repro_case.seq_len, "timing": timing})
        agreement = median_agreement(runs[0], runs[1], tolerance=0.05)
        yield R.target(target="same kernel, two consecutive runs: medians agree within 5%", threshold=0.05,
                       unit="relative difference", measured=agreement["relative_difference"], status="measured")

        models = ctx.models or [get_model(name) for name in DEFAULT_MODELS]
        # Issue 4's grid: the methodology's cache and scaling lengths, plus long contexts up to 65536.
        lengths = (64, 4096) if ctx.quick else tuple(sorted(set(m.cache_lengths) | set(m.scaling_lengths) | LONG_LENGTHS))
        worst_ratio: dict[str, float] = {"all": 0.0, "short": 0.0}
        # The 1.5x target's bound: a kernel that only reads the K/V bytes once (ColdReadOp, same timing) against
        # SDPA's time / 1.5, worst case over S <= 4096 (> 1: no kernel reading those bytes can meet the target).
        short_bound = {"ratio": 0.0, "case": ""}
        for model in models:
            for seq_len in ctx.progress(lengths, desc=f"fa2_decode {model.name}"):
                case = gpu_bench.AttentionCase(model.name, model.n_q_heads, model.n_kv_heads, model.head_dim, seq_len)
                s = gpu_bench.attention_samples(case, timer, warmup=warmup, iterations=iterations,
                                                sweep_heads_per_block=not ctx.quick)
                params = {"cache_len": seq_len, "q_heads": case.q_heads, "kv_heads": case.kv_heads,
                          "head_dim": case.head_dim, "batch": 1, "dtype": "float16", "timing": timing}
                ours_gb_s = case.kv_bytes / (np.median(s["fa2"]) * 1e-6) / 1e9
                ours = R.measurement(
                    name="fa2_decode", kind=KIND, engine="edgellm_ext", metric="latency", unit="us", samples=s["fa2"],
                    params=params, model=model.name,
                    extra={"variant": s["variant"], "num_splits": s["num_splits"], "heads_per_block": s["heads_per_block"],
                           "kv_bytes": case.kv_bytes, "gb_s": ours_gb_s, "pct_of_copy_bw": 100 * ours_gb_s / copy_gb_s,
                           "max_abs_error_vs_float64": s["max_abs_error"],
                           "by_heads_per_block_median_us": {str(h): [n, float(np.median(t))]
                                                             for h, (n, t) in s["by_heads_per_block"].items()}})
                peer = R.measurement(name="sdpa", kind=KIND, engine="torch", metric="latency", unit="us",
                                     samples=s["sdpa"], params=params, model=model.name,
                                     extra={"gb_s": case.kv_bytes / (np.median(s["sdpa"]) * 1e-6) / 1e9})
                yield ours
                yield peer
                cmp = R.comparison(name=f"fa2_decode vs sdpa, {model.name}, S={seq_len}", a=peer, b=ours,
                                   description="speedup: median(sdpa) / median(fa2_decode)")
                yield cmp
                graph_params = {**params, "timing": f"per launch, {gpu_bench.GRAPH_LAUNCHES} launches in one CUDA graph"}
                g_ours = R.measurement(name="fa2_decode_graph", kind=KIND, engine="edgellm_ext", metric="latency",
                                       unit="us", samples=s["fa2_graph"], params=graph_params, model=model.name)
                g_peer = R.measurement(name="sdpa_graph", kind=KIND, engine="torch", metric="latency", unit="us",
                                       samples=s["sdpa_graph"], params=graph_params, model=model.name)
                yield g_ours
                yield g_peer
                yield R.comparison(name=f"fa2_decode vs sdpa in CUDA graphs, {model.name}, S={seq_len}", a=g_peer,
                                   b=g_ours, description="speedup: median(sdpa) / median(fa2_decode), graph replays")
                ratio = 1.0 / cmp["ratio"]  # our time / SDPA's time
                worst_ratio["all"] = max(worst_ratio["all"], ratio)
                if seq_len <= 4096:
                    worst_ratio["short"] = max(worst_ratio["short"], ratio)
                    floor = R.measurement(
                        name="cold_read_floor", kind=KIND, engine="edgellm_ext", metric="latency", unit="us",
                        samples=gpu_bench.cold_read_samples(timer, case.kv_bytes, warmup=warmup,
                                                            iterations=iterations),
                        params={**params, "bytes": case.kv_bytes,
                                "what": "a kernel that only reads the K/V bytes once (16 B per thread)"},
                        model=model.name)
                    yield floor
                    bound = floor["stats"]["median"] / (peer["stats"]["median"] / 1.5)
                    if bound > short_bound["ratio"]:
                        short_bound.update(ratio=bound, case=f"{model.name}, S={seq_len}")
                if model.name == "Llama-3.1-8B" and seq_len == 65536:
                    yield R.target(target="fa2_decode >= 80% of copy bandwidth at S=65536, Llama-3.1-8B shape",
                                   threshold=1.0, unit="time / time at 80% of copy bandwidth",
                                   measured=0.8 * copy_gb_s / ours_gb_s, status="measured")
        yield R.target(target="fa2_decode no slower than SDPA anywhere (worst time ratio fa2/sdpa)",
                       threshold=1.0, unit="ratio", measured=worst_ratio["all"], status="measured")
        yield R.target(target="fa2_decode >= 1.5x faster than SDPA for S <= 4096 (worst time ratio fa2/sdpa)",
                       threshold=1 / 1.5, unit="ratio", measured=worst_ratio["short"], status="measured")
        yield R.target(target="bound check, the 1.5x target: cold read of the K/V bytes / (SDPA time / 1.5), worst "
                              "over S <= 4096 (a FAIL here means even a read-only kernel misses the target)",
                       threshold=1.0, unit="ratio", measured=short_bound["ratio"], status="measured",
                       notes=f"worst case: {short_bound['case']}")

        shapes = QUICK_GEMV if ctx.quick else tuple(gpu_bench.GEMV_SHAPES)
        for name in ctx.progress(shapes, desc="gemv"):
            s = gpu_bench.gemv_samples(name, timer, warmup=warmup, iterations=iterations)
            params = {"shape": name, "m": s["m"], "k": s["k"], "batch": 1, "activations": "float16", "timing": timing}
            cublas = R.measurement(name="cublas_fp16_gemv", kind=KIND, engine="torch", metric="latency", unit="us",
                                   samples=s["cublas"], params=params,
                                   extra={"weight_gb_s": s["fp16_weight_bytes"] / (np.median(s["cublas"]) * 1e-6) / 1e9})
            yield cublas
            rows = {}
            for key, label, weight_bytes in (("gemv", "gemv_fp16", s["fp16_weight_bytes"]),
                                             ("fused", "fused_rmsnorm_gemv_fp16", s["fp16_weight_bytes"]),
                                             ("rmsnorm_then_gemv", "rmsnorm_then_gemv_fp16", s["fp16_weight_bytes"]),
                                             ("tmac", "tmac_ternary_gemv", s["ternary_packed_bytes"])):
                gb_s = weight_bytes / (np.median(s[key]) * 1e-6) / 1e9
                rows[key] = R.measurement(
                    name=label, kind=KIND, engine="edgellm_ext", metric="latency", unit="us", samples=s[key],
                    params=params, extra={"weight_bytes": weight_bytes, "weight_gb_s": gb_s,
                                          "pct_of_copy_bw": 100 * gb_s / copy_gb_s,
                                          "max_rel_error_vs_float64": s["max_rel_error"][key],
                                          **({"variant": s["tmac_variant"]} if key == "tmac" else {})})
                yield rows[key]
                yield R.comparison(name=f"{label} vs cuBLAS fp16, {name}", a=cublas, b=rows[key],
                                   description=f"speedup: median(cuBLAS fp16) / median({label})")
            # The same operations per launch inside CUDA graphs (launch overhead removed, warm L2).
            graph_params = {**params, "timing": f"per launch, {gpu_bench.GRAPH_LAUNCHES} launches in one CUDA graph"}
            cublas_graph = R.measurement(name="cublas_fp16_gemv_graph", kind=KIND, engine="torch", metric="latency",
                                         unit="us", samples=s["cublas_graph"], params=graph_params)
            yield cublas_graph
            for key, label in (("gemv", "gemv_fp16"), ("fused", "fused_rmsnorm_gemv_fp16"),
                               ("rmsnorm_then_gemv", "rmsnorm_then_gemv_fp16"), ("tmac", "tmac_ternary_gemv")):
                g = R.measurement(name=f"{label}_graph", kind=KIND, engine="edgellm_ext", metric="latency", unit="us",
                                  samples=s[f"{key}_graph"], params=graph_params)
                yield g
                yield R.comparison(name=f"{label} vs cuBLAS fp16 in CUDA graphs, {name}", a=cublas_graph, b=g,
                                   description=f"speedup: median(cuBLAS fp16) / median({label}), graph replays")
            yield R.comparison(name=f"fused vs GEMV alone, {name}", a=rows["fused"], b=rows["gemv"],
                               description="median(fused) / median(gemv): target <= 1.1")
            tmac_median = rows["tmac"]["stats"]["median"]
            big = s["m"] * s["k"] >= 4096 * 4096
            smol_projection = name.startswith("smol_") and name != "smol_lmhead"
            floor_median = None
            if big or smol_projection:
                # The bound: a kernel that only reads the packed weights, scales and x once (same timing).
                read_bytes = s["ternary_packed_bytes"] + 4 * s["m"] + 2 * s["k"]
                floor = R.measurement(
                    name="cold_read_floor", kind=KIND, engine="edgellm_ext", metric="latency", unit="us",
                    samples=gpu_bench.cold_read_samples(timer, read_bytes, warmup=warmup, iterations=iterations),
                    params={**params, "bytes": read_bytes,
                            "what": "a kernel that only reads the packed weights, scales and x once (16 B per thread)"})
                yield floor
                floor_median = floor["stats"]["median"]
            if big:
                cublas_median = cublas["stats"]["median"]
                time_at_half_bw = rows["tmac"]["extra"]["weight_bytes"] / (0.5 * copy_gb_s * 1e9) * 1e6  # us
                yield R.target(target=f"tmac >= 3x faster than cuBLAS fp16, {name} (time ratio tmac/cuBLAS)",
                               threshold=1 / 3, unit="ratio", measured=tmac_median / cublas_median,
                               status="measured")
                yield R.target(target=f"bound check, tmac >= 3x faster than cuBLAS: cold read of its bytes / "
                                      f"(cuBLAS time / 3), {name} (a FAIL here means even a read-only kernel "
                                      f"misses the target)",
                               threshold=1.0, unit="ratio", measured=floor_median / (cublas_median / 3),
                               status="measured")
                yield R.target(target=f"tmac >= 50% of copy bandwidth (packed bytes), {name}", threshold=1.0,
                               unit="time / time at 50% of copy bandwidth",
                               measured=tmac_median / time_at_half_bw, status="measured")
                yield R.target(target=f"bound check, tmac >= 50% of copy bandwidth: cold read of its bytes / time at "
                                      f"50% of copy bandwidth, {name} (a FAIL here means even a read-only kernel "
                                      f"misses the target)",
                               threshold=1.0, unit="time / time at 50% of copy bandwidth",
                               measured=floor_median / time_at_half_bw, status="measured")
            if smol_projection:
                yield R.target(target=f"tmac SmolLM2 projection <= 4 us, {name}", threshold=4.0, unit="us",
                               measured=tmac_median, status="measured")
                yield R.target(target=f"bound check, tmac <= 4 us: cold read of its bytes, {name} (a FAIL here means "
                                      f"even a read-only kernel misses the target)", threshold=4.0, unit="us",
                               measured=floor_median, status="measured")
            yield R.target(target=f"fused <= 1.1x the GEMV alone, {name}", threshold=1.1, unit="ratio",
                           measured=rows["fused"]["stats"]["median"] / rows["gemv"]["stats"]["median"],
                           status="measured")
