"""Kernel-only per-token estimates that cannot silently leave work out.

The predecessor turned one attention kernel's time into "tok/s" with 9 layers instead of 30 and no projections.
:func:`kernel_only_token_estimate` refuses that: it needs a time for every matrix of a layer (fused or unfused
set), the attention, and the LM head, multiplies the layer by the model's real layer count, and labels the result
"kernel-only estimate" with what is included and what is not. It is the sum of kernel times (CUDA events), not an
engine speed: launch gaps, host work, sampling and everything between kernels are excluded.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .registry import ModelConfig

__all__ = ["kernel_only_token_estimate"]

_FUSED = ("qkv", "o", "gate_up", "down")
_UNFUSED = ("q", "k", "v", "o", "gate", "up", "down")
_EXCLUDED = ("launch gaps and host work between kernels", "embedding lookup", "sampling", "detokenization")


def kernel_only_token_estimate(
    model: ModelConfig,
    layer_times_us: Mapping[str, float],
    lm_head_us: float,
) -> dict[str, Any]:
    """Per-token kernel time = n_layers * (sum of one layer's kernel times) + LM head.

    ``layer_times_us`` must hold ``attention`` and either every fused matrix (qkv, o, gate_up, down) or every
    unfused one (q, k, v, o, gate, up, down), as median microseconds; other keys (``rmsnorm``, ``rope``,
    ``kv_append``, ``silu_mul``, ...) are added as they are. Raises ValueError naming what is missing.
    """
    if not isinstance(model, ModelConfig):
        raise TypeError(f"model: expected a ModelConfig, got {type(model).__name__}")
    times = dict(layer_times_us)
    for key, value in [*times.items(), ("lm_head", lm_head_us)]:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{key}: expected a finite time >= 0 in us, got {value!r}")
    if "attention" not in times:
        raise ValueError("layer_times_us: 'attention' is missing; a decode layer always attends over the cache")
    fused_ok = all(k in times for k in _FUSED)
    unfused_ok = all(k in times for k in _UNFUSED)
    if not (fused_ok or unfused_ok):
        missing_fused = [k for k in _FUSED if k not in times]
        missing_unfused = [k for k in _UNFUSED if k not in times]
        raise ValueError(f"layer_times_us: every projection of a layer is needed; missing {missing_fused} "
                         f"(fused set) or {missing_unfused} (unfused set)")
    if fused_ok and any(k in times for k in ("q", "k", "v", "gate", "up")):
        raise ValueError("layer_times_us: give either the fused (qkv, gate_up) or the unfused (q, k, v, gate, up) "
                         "projections, not both (they would be counted twice)")
    per_layer = float(sum(times.values()))
    per_token = model.n_layers * per_layer + float(lm_head_us)
    return {
        "label": "kernel-only estimate",
        "model": model.name,
        "n_layers": model.n_layers,
        "per_layer_us": per_layer,
        "lm_head_us": float(lm_head_us),
        "per_token_us": per_token,
        "tok_s": 1e6 / per_token if per_token > 0 else None,
        "included": sorted(times) + ["lm_head"],
        "excluded": list(_EXCLUDED),
    }
