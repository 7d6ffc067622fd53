"""Streaming clients for inference servers, used by the end-to-end benchmark suites.

- :class:`OllamaClient`: Ollama's ``/api/tags`` and streaming ``/api/generate`` (NDJSON).
- :class:`OpenAICompatClient`: any OpenAI-compatible server's ``/v1/models`` and streaming ``/v1/completions``
  (Server-Sent Events): llama.cpp's server, vLLM, SGLang.

Every failure is an :class:`EngineError` subclass with a one-line message: :class:`EngineUnreachable`,
:class:`EngineTimeout`, :class:`EngineHTTPError`, :class:`ModelMissing`, :class:`StreamError` (malformed or
truncated stream). Both need ``requests`` (the ``bench`` extra).
"""

from __future__ import annotations

from .common import (
    EngineError,
    EngineHTTPError,
    EngineTimeout,
    EngineUnreachable,
    GenerationResult,
    ModelMissing,
    StreamError,
    benchmark_engine,
)
from .ollama import OllamaClient
from .openai_compat import OpenAICompatClient

__all__ = [
    "EngineError",
    "EngineHTTPError",
    "EngineTimeout",
    "EngineUnreachable",
    "GenerationResult",
    "ModelMissing",
    "OllamaClient",
    "OpenAICompatClient",
    "StreamError",
    "benchmark_engine",
]

# llama.cpp's llama-bench (no server): run one command, parse its -o json output.
from .llama_bench import (  # noqa: E402
    LlamaBenchError,
    LlamaBenchOutputError,
    LlamaBenchRecord,
    llama_bench_command,
    parse_llama_bench_json,
    run_llama_bench,
)

__all__ += [
    "LlamaBenchError",
    "LlamaBenchOutputError",
    "LlamaBenchRecord",
    "llama_bench_command",
    "parse_llama_bench_json",
    "run_llama_bench",
]
