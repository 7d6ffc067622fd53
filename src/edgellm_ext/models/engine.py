"""End-to-end decoding of a GGUF model with edgellm_ext's engines: the C++ CPU engine or the CUDA engine.

>>> model = Model.load("SmolLM2-135M-Instruct.Q4_1.gguf", n_threads=2)       # doctest: +SKIP
>>> for piece in model.generate_text("The capital of France is", max_new_tokens=16):  # doctest: +SKIP
...     print(piece, end="")

The whole per-token step (all layers, the LM head and the argmax) runs in C++ (``src/cpp/engine.cpp``) or, with
``device="cuda"``, on the GPU as one CUDA graph replay (``src/cuda/gpu_engine.cu``); Python only loops over tokens
and samples when sampling is asked for. Arithmetic mirrors llama.cpp's CPU path (Q8 activations for the quantized
matvecs, f16 KV cache): see docs/engine.md.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .. import _core
from .._checks import simd_name
from .gguf_model import GgufModel, DecoderConfig, open_reader, read_gguf

__all__ = ["ContextFullError", "GenerationStats", "Model", "SUPPORTED_DEVICES"]

#: Devices this build's engine runs on ("cuda" needs a CUDA build; a visible GPU is checked at load).
SUPPORTED_DEVICES: tuple[str, ...] = ("cpu", "cuda") if _core.cuda_compiled() else ("cpu",)

#: Raised when tokens do not fit in the KV cache (a ValueError); the engine's state is unchanged.
ContextFullError = _core.EngineContextFull


@dataclass
class GenerationStats:
    """Timings of the last :meth:`Model.generate` call (wall clock, seconds)."""

    n_prompt_tokens: int = 0
    n_generated: int = 0
    prefill_s: float = 0.0  # prompt through the engine up to the first sampled token (= time to first token)
    decode_s: float = 0.0   # every further token

    @property
    def ttft_s(self) -> float:
        return self.prefill_s

    @property
    def prefill_tok_s(self) -> float:
        return self.n_prompt_tokens / self.prefill_s if self.prefill_s > 0 else float("nan")

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first, per second of decode time (each one a full forward step)."""
        steps = self.n_generated - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else float("nan")


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {value}")
    return int(value)


class Model:
    """A GGUF decoder model loaded for decoding on the CPU or a CUDA GPU. Build with :meth:`Model.load`.

    Not thread-safe: one generation at a time per Model (a second concurrent call raises RuntimeError).
    """

    def __init__(self, gguf_model: GgufModel, engine: Any, n_ctx: int, device: str = "cpu") -> None:
        self._gguf = gguf_model
        self._engine = engine
        self.device = device
        self.n_ctx = n_ctx
        self.tokenizer = gguf_model.tokenizer
        self.last_stats = GenerationStats()

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: Union[str, os.PathLike],
        device: str = "cpu",
        *,
        n_threads: Optional[int] = None,
        n_ctx: int = 2048,
        simd: Optional[str] = None,
        reader: Any = None,
        programmatic_launch: bool = True,
        step_mode: str = "graph",
        activations: Optional[str] = None,
    ) -> "Model":
        """Load the GGUF at ``path``.

        device: "cpu", or "cuda" (the current CUDA device; weights are copied to the GPU once, Q4_0/Q4_1/Q8_0 as
        stored, every other type as fp16 weights: exact for F16 files, rounded from BF16/F32/other types, a value
        beyond fp16's range a ValueError; RuntimeError when no GPU is visible). n_threads (CPU only): worker threads (default: the CPUs this
        process may use). n_ctx: KV cache positions (prompt + generated tokens; capped by nothing but memory:
        ~2 * n_layer * n_head_kv * head_dim * 4 bytes per position). simd: "auto"/None, "scalar", "avx2", "neon".
        reader: an open ``gguf.GGUFReader`` of the same file to reuse (parsing is the slow part of loading).
        programmatic_launch (cuda only): let each GEMV kernel start while the previous kernel finishes (sm_90+;
        False gives plain stream order, for comparison).
        step_mode (cuda only): "graph" (default) runs each step as a CUDA graph of 5 kernels per layer;
        "persistent" as one persistent kernel with grid barriers between its stages (experimental: measured about
        half as fast on an H200, docs/engine.md; needs n_head / n_head_kv <= 8, no fp16 weights and
        activations "q8_1", else ValueError).
        activations (cuda only): "f32" (the graph step's default) multiplies quantized weights with the f32
        activations themselves; "q8_1" (the persistent step's only form) with Q8_1-quantized activations, as ggml
        and the CPU engine do. f32 is more exact and measured faster (SmolLM2-135M Q4_1 on an H200: 1952 vs 1762
        tok/s; docs/engine.md).
        Errors: FileNotFoundError (no file), ValueError (not GGUF, truncated, unsupported architecture or tensor
        type, missing metadata or tensors).
        """
        if not isinstance(device, str):
            raise TypeError(f"device: expected a str, got {type(device).__name__}")
        if device not in SUPPORTED_DEVICES:
            raise ValueError(f"device: {device!r} is not supported by this build's engine; supported: "
                             f"{', '.join(SUPPORTED_DEVICES)}")
        if not isinstance(step_mode, str) or step_mode not in ("graph", "persistent"):
            raise ValueError(f"step_mode: expected 'graph' or 'persistent', got {step_mode!r}")
        if activations is None:
            activations = "q8_1" if step_mode == "persistent" else "f32"
        if not isinstance(activations, str) or activations not in ("q8_1", "f32"):
            raise ValueError(f"activations: expected 'q8_1' or 'f32', got {activations!r}")
        if device == "cuda":
            from ..cuda import require_cuda

            require_cuda()
        if n_threads is None:
            n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n_threads = _check_positive_int(n_threads, "n_threads")
        n_ctx = _check_positive_int(n_ctx, "n_ctx")
        path = os.fspath(path)
        if reader is None:
            reader = open_reader(path)
        g = read_gguf(path, reader)
        if device == "cuda":
            engine = _core.GpuEngine(g.config.engine_dict(n_ctx), g.weights, bool(programmatic_launch), step_mode,
                                     activations)
        else:
            engine = _core.CpuEngine(g.config.engine_dict(n_ctx), g.weights, n_threads, simd_name(simd))
        return cls(g, engine, n_ctx, device)

    # --------------------------------------------------------------------------------------------- queries
    @property
    def config(self) -> DecoderConfig:
        return self._gguf.config

    @property
    def n_threads(self) -> Optional[int]:
        """CPU worker threads (None on the GPU)."""
        return int(self._engine.n_threads) if self.device == "cpu" else None

    @property
    def simd(self) -> Optional[str]:
        """The CPU engine's SIMD path (None on the GPU)."""
        return str(self._engine.simd) if self.device == "cpu" else None

    def gpu_counters(self) -> dict[str, int]:
        """GPU engine only: kernels per step, graph nodes and host<->device bytes of the last step, device
        memory the engine allocated, matrices run with fp16 weights."""
        if self.device != "cuda":
            raise ValueError("gpu_counters: the model is on the CPU")
        e = self._engine
        return {"kernels_per_step": int(e.kernels_per_step), "graph_nodes": int(e.graph_nodes),
                "programmatic_launch": int(e.programmatic_launch), "persistent": int(e.step_mode == "persistent"),
                "last_step_h2d_bytes": int(e.last_step_h2d_bytes), "last_step_d2h_bytes": int(e.last_step_d2h_bytes),
                "device_bytes": int(e.device_bytes), "fp16_matrices": int(e.fp16_matrices),
                "f32_activations": int(e.activations == "f32")}

    @property
    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decode step reads (all matrices incl. the LM head)."""
        return int(self._engine.weight_bytes_per_token)

    @property
    def chat_template(self) -> Optional[str]:
        return self._gguf.chat_template

    def summary(self) -> str:
        where = (f"cpu, {self.n_threads} threads, simd {self.simd}" if self.device == "cpu" else
                 f"cuda, {self._engine.step_mode} step: {self._engine.kernels_per_step} kernel(s) per step in one "
                 f"CUDA graph, "
                 f"{self._engine.device_bytes / 2**20:.1f} MiB on the device"
                 + (f", {self._engine.fp16_matrices} matrices as fp16 weights" if self._engine.fp16_matrices else ""))
        return (f"{self._gguf.summary()}\nengine: {where}, n_ctx {self.n_ctx}, "
                f"{self.weight_bytes_per_token / 2**20:.1f} MiB of weights per token")

    def apply_chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render ``messages`` ([{"role": ..., "content": ...}]) with the GGUF's ``tokenizer.chat_template``
        (Jinja, sandboxed; needs jinja2). ValueError when the file has no template."""
        if not self.chat_template:
            raise ValueError("this GGUF has no tokenizer.chat_template")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:  # pragma: no cover - jinja2 comes with llama-cpp-python / most installs
            raise ImportError("apply_chat_template needs jinja2 (pip install jinja2)") from exc
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        tok = self.tokenizer
        bos = tok.decode([tok.bos_id]) if tok.bos_id is not None else ""
        eos = tok.decode([tok.eos_id]) if tok.eos_id is not None else ""
        return str(env.from_string(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos))

    # ------------------------------------------------------------------------------------------- decoding
    def encode(self, prompt: Union[str, Sequence[int], np.ndarray], add_bos: Optional[bool] = None) -> np.ndarray:
        """Token ids (int64) of a prompt string (special tokens such as <|im_start|> are parsed) or id list."""
        if isinstance(prompt, str):
            ids = np.asarray(self.tokenizer.encode(prompt, add_bos=add_bos, parse_special=True), dtype=np.int64)
        else:
            ids = np.asarray(prompt)
            if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
                raise TypeError("prompt: expected a str or a 1-D sequence of int token ids")
            ids = ids.astype(np.int64)
        if ids.size == 0:
            raise ValueError("prompt: empty (no tokens to condition on); pass at least one token")
        bad = np.flatnonzero((ids < 0) | (ids >= self.config.n_vocab))
        if bad.size:
            raise ValueError(f"prompt: token id {int(ids[bad[0]])} at index {int(bad[0])} is outside the vocabulary "
                             f"[0, {self.config.n_vocab})")
        return ids

    def reset(self) -> None:
        """Forget the KV cache (the next call starts at position 0)."""
        self._engine.truncate(0)

    @property
    def n_past(self) -> int:
        return int(self._engine.n_past)

    def truncate(self, n: int) -> None:
        """Forget cache positions >= n (n <= :attr:`n_past`): the next step runs at position n."""
        self._engine.truncate(_check_positive_int(n, "n", minimum=0))

    def prefill(self, prompt: Union[str, Sequence[int], np.ndarray], logits: Optional[np.ndarray] = None) -> int:
        """Run the prompt's tokens at positions :attr:`n_past`, ... (appending to the cache; batched on the CPU,
        in steps of 8 tokens on the GPU); fills ``logits`` of the last token when given; returns
        its argmax. ContextFullError (nothing run) when the tokens do not fit."""
        return int(self._engine.prefill(self.encode(prompt), logits))

    def forward(self, token: int, logits: Optional[np.ndarray] = None) -> int:
        """One decode step at position :attr:`n_past` (appends to the cache); fills ``logits`` (float32
        [n_vocab]) when given; returns the argmax token. ContextFullError when the cache is full."""
        return int(self._engine.step(int(token), logits, True))

    def greedy(self, token: int, n_new: int) -> Iterator[int]:
        """Greedy continuation of the cache: feeds ``token`` at :attr:`n_past`, yields the argmax, feeds that
        back, and so on: ``n_new`` tokens, every one but the last fed back (n_past grows by n_new). On the GPU each
        step is submitted before the previous one's token is read (its input is already in device memory), so the
        host's per-token work overlaps the GPU's. Closing the iterator early leaves n_past at the tokens fed for the
        tokens yielded so far. ContextFullError (nothing run) when n_new steps do not fit in the cache."""
        n_new = _check_positive_int(n_new, "n_new")
        token = _check_positive_int(token, "token", minimum=0)
        if self.n_past + n_new > self.n_ctx:
            raise ContextFullError(f"n_past ({self.n_past}) + n_new ({n_new}) exceeds n_ctx ({self.n_ctx})")
        return self._greedy(token, n_new)

    def _greedy(self, token: int, n_new: int) -> Iterator[int]:
        engine = self._engine
        if self.device != "cuda":
            for _ in range(n_new):
                token = int(engine.step(token, None, True))
                yield token
            return
        base = int(engine.n_past)
        engine.submit(token)
        fed, got = 1, 0
        try:
            while got < n_new:
                if fed < n_new:  # the next step, fed the argmax the GPU is computing now
                    engine.submit(None)
                    fed += 1
                token = int(engine.collect())
                got += 1
                yield token
        finally:
            if fed > got:  # steps for tokens not handed out: drop them (and their cache positions)
                engine.truncate(base + got)

    def generate(
        self,
        prompt: Union[str, Sequence[int], np.ndarray],
        max_new_tokens: int = 64,
        *,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        stop_at_eos: bool = True,
        add_bos: Optional[bool] = None,
    ) -> Iterator[int]:
        """Stream new token ids for ``prompt`` (a str or token ids), starting from an empty cache.

        temperature == 0 (default): greedy (argmax). temperature > 0: sample from softmax(logits / temperature)
        restricted to the top_k most likely (0: all) and to the smallest set with probability >= top_p, with a
        numpy Generator seeded by ``seed``. Stops after max_new_tokens or at the end-of-sequence token
        (``stop_at_eos``; the EOS id is yielded). Timings land in :attr:`last_stats`.
        ValueError before anything runs when prompt + max_new_tokens exceed n_ctx, or the prompt is empty.
        """
        max_new_tokens = _check_positive_int(max_new_tokens, "max_new_tokens")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature: expected a finite number >= 0, got {temperature!r}")
        top_k = _check_positive_int(top_k, "top_k", minimum=0)
        if not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
            raise ValueError(f"top_p: expected 0 < top_p <= 1, got {top_p!r}")
        ids = self.encode(prompt, add_bos=add_bos)
        need = ids.size + max_new_tokens - 1  # the last generated token is never fed back
        if need > self.n_ctx:
            raise ContextFullError(f"prompt ({ids.size} tokens) + max_new_tokens ({max_new_tokens}) needs {need} "
                                   f"cache positions but n_ctx is {self.n_ctx}; load with a larger n_ctx")
        return self._generate(ids, max_new_tokens, float(temperature), top_k, float(top_p), seed, stop_at_eos)

    def _generate(self, ids: np.ndarray, max_new: int, temperature: float, top_k: int, top_p: float,
                  seed: Optional[int], stop_at_eos: bool) -> Iterator[int]:
        sampling = temperature > 0
        rng = np.random.default_rng(seed) if sampling else None
        logits = np.empty(self.config.n_vocab, dtype=np.float32) if sampling else None
        eos = self.tokenizer.eos_id if stop_at_eos else None
        stats = GenerationStats(n_prompt_tokens=int(ids.size))
        self.last_stats = stats
        engine = self._engine
        engine.truncate(0)
        t0 = time.perf_counter()
        best = int(engine.prefill(ids, logits))
        token = self._pick(best, logits, temperature, top_k, top_p, rng)
        stats.prefill_s = time.perf_counter() - t0
        stats.n_generated = 1
        yield token
        t1 = time.perf_counter()
        try:
            if sampling:
                for _ in range(max_new - 1):
                    if eos is not None and token == eos:
                        break
                    best = int(engine.step(token, logits, True))
                    token = self._pick(best, logits, temperature, top_k, top_p, rng)
                    stats.n_generated += 1
                    stats.decode_s = time.perf_counter() - t1
                    yield token
            elif max_new > 1 and token != eos:
                with contextlib.closing(self._greedy(token, max_new - 1)) as tokens:
                    for token in tokens:
                        stats.n_generated += 1
                        stats.decode_s = time.perf_counter() - t1
                        yield token
                        if token == eos:
                            break
        finally:
            stats.decode_s = time.perf_counter() - t1 if stats.n_generated > 1 else 0.0

    @staticmethod
    def _pick(best: int, logits: Optional[np.ndarray], temperature: float, top_k: int, top_p: float,
              rng: Optional[np.random.Generator]) -> int:
        if logits is None or rng is None:
            return best
        z = logits.astype(np.float64) / temperature
        order = np.argsort(-z, kind="stable")
        if top_k > 0:
            order = order[:top_k]
        p = np.exp(z[order] - z[order[0]])
        p /= p.sum()
        if top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
            order, p = order[:keep], p[:keep] / p[:keep].sum()
        return int(order[rng.choice(order.size, p=p)])

    def generate_text(self, prompt: Union[str, Sequence[int], np.ndarray], max_new_tokens: int = 64,
                      **kwargs: Any) -> Iterator[str]:
        """As :meth:`generate`, streaming decoded text (UTF-8 sequences split across tokens are held back until
        complete; invalid bytes become U+FFFD)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in self.generate(prompt, max_new_tokens, **kwargs):
            piece = decoder.decode(self.tokenizer.decode_bytes([token]))
            if piece:
                yield piece
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
