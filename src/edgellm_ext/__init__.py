"""edgellm_ext: decode-time LLM kernels for edge GPUs and CPUs, with an honest benchmark harness.

The compiled core is the private module ``edgellm_ext._core``; use the typed modules here:

- :mod:`edgellm_ext.cpu`: CPU kernels (float32, scalar/AVX2/NEON paths), KV cache, arena.
- :mod:`edgellm_ext.tmac`: ternary (BitNet b1.58) GEMV on the GPU with device-resident weights.
- :mod:`edgellm_ext.quant`: GGUF Q4_0/Q4_1/Q8_0 blocks (quantize, dequantize, matvec);
  :mod:`edgellm_ext.ternary`: ternary (BitNet b1.58) matvec; :mod:`edgellm_ext.formats`: reference packers.
- :mod:`edgellm_ext.tokenizer`: byte-level BPE tokenizer loaded from GGUF metadata.
- :mod:`edgellm_ext.quant`: GGUF Q4_0/Q4_1/Q8_0 blocks (quantize, dequantize, matvec);
  :mod:`edgellm_ext.ternary`: ternary (BitNet b1.58) matvec; :mod:`edgellm_ext.formats`: reference packers.
- :mod:`edgellm_ext.attention`: GPU decode attention (:func:`fa2_decode`, GQA, split-KV) and :func:`kv_append`.
- :mod:`edgellm_ext.gemv`: GPU GEMV, fused RMSNorm + GEMV and RMSNorm (decode, batch 1..8).
- :mod:`edgellm_ext.cuda`: device arrays, streams and the CUDA-event / CUDA-graph timers.
- :func:`build_info`: how this copy was built; :func:`cuda_available`: whether CUDA kernels can run.
"""

from __future__ import annotations

from typing import Any

from . import _core, attention, cpu, cuda, formats, gemv, quant, ternary, tmac, tokenizer
from .attention import fa2_decode, kv_append

__version__: str = _core.build_info()["version"]

__all__ = ["__version__", "attention", "build_info", "cpu", "cuda", "cuda_available", "fa2_decode", "formats",
           "gemv", "kv_append", "quant", "ternary", "tmac", "tokenizer"]



def cuda_available() -> bool:
    """True when the CUDA kernels were compiled in and a CUDA device is visible now."""
    return bool(_core.cuda_compiled() and _core.cuda_device_count() > 0)


def build_info() -> dict[str, Any]:
    """How this copy of edgellm_ext was built, plus what the running machine selects.

    Keys: ``version``, ``compiler``, ``build_type``, ``cxx_flags``, ``target_arch``, ``simd_compiled`` (paths in
    the binary), ``simd`` (the path ``simd="auto"`` picks on this CPU), ``cuda_compiled``,
    ``cuda_compiler_version``, ``cuda_architectures``, ``pybind11_version``, ``cuda_device_count``.
    """
    info: dict[str, Any] = dict(_core.build_info())
    info["cuda_device_count"] = _core.cuda_device_count()
    return info
