"""Reading a decoder model (config, tokenizer, weights) out of a GGUF file with the ``gguf`` package.

One ``gguf.GGUFReader`` serves the config, the tokenizer and the tensors (parsing is the slow part of loading).
Weights are not copied: quantized tensors the engine has a matvec for (Q4_0, Q4_1, Q8_0) and F32 tensors are
numpy views of the file's memory map. Any other type (F16, BF16, K-quants, ...) is dequantized once, here, to
float32 with ``gguf.quants.dequantize``; :attr:`GgufModel.dequantized` lists those tensors.

Supported architectures: ``llama`` (SmolLM/SmolLM2, Llama-2/3.x: llama.cpp's converter permutes Q/K for the
interleaved "normal" RoPE layout, which the engine uses for this arch) and ``qwen2`` (Q/K/V biases, NeoX RoPE).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

#: GGUF ``general.architecture`` values the CPU engine runs, with their RoPE layout.
SUPPORTED_ARCHITECTURES: dict[str, str] = {"llama": "normal", "qwen2": "neox"}

#: ggml type ids the engine consumes as they are in the file.
NATIVE_TYPES: dict[str, int] = {"F32": 0, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8}


@dataclass(frozen=True)
class DecoderConfig:
    """Hyperparameters read from ``{arch}.*`` metadata."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_rot: int
    rope_base: float
    rope_neox: bool
    rms_eps: float
    context_length: int
    tied_embeddings: bool

    def engine_dict(self, max_seq: int) -> dict[str, Any]:
        keys = ("n_layer", "n_embd", "n_head", "n_head_kv", "head_dim", "n_ff", "n_vocab", "n_rot", "rope_base",
                "rope_neox", "rms_eps")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out["max_seq"] = int(max_seq)
        return out


@dataclass
class GgufModel:
    """What :func:`read_gguf` found: config, tokenizer, engine weights and a per-type tensor count."""

    path: str
    config: DecoderConfig
    tokenizer: Any
    weights: dict[str, tuple[int, np.ndarray]]
    tensor_types: dict[str, int]
    dequantized: list[str] = field(default_factory=list)
    chat_template: Optional[str] = None
    name: str = ""

    def summary(self) -> str:
        c = self.config
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.tensor_types.items()))
        lines = [
            f"{self.name or os.path.basename(self.path)} ({c.arch}): {c.n_layer} layers, n_embd {c.n_embd}, "
            f"heads {c.n_head}/{c.n_head_kv} kv, head_dim {c.head_dim}, n_ff {c.n_ff}, vocab {c.n_vocab}, "
            f"rope {'neox' if c.rope_neox else 'normal'} base {c.rope_base:g}, "
            f"{'tied' if c.tied_embeddings else 'separate'} LM head",
            f"tensor types in file: {types}",
        ]
        if self.dequantized:
            lines.append(f"dequantized to float32 at load (no quantized matvec for their type): "
                         f"{len(self.dequantized)} tensors, e.g. {', '.join(self.dequantized[:3])}")
        else:
            lines.append("all weights used in the file's own quantization")
        return "\n".join(lines)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def _require(reader: Any, path: str, key: str) -> Any:
    value = _field(reader, key)
    if value is None:
        raise ValueError(f"{path}: GGUF metadata '{key}' is missing")
    return value


def open_reader(path: Union[str, os.PathLike]) -> Any:
    """A ``gguf.GGUFReader`` for ``path``; FileNotFoundError when absent, ValueError when not readable as GGUF
    (bad magic, truncated header or tensor data, ...)."""
    import gguf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as exc:  # gguf raises assorted errors (ValueError, struct.error, IndexError) on bad input
        raise ValueError(f"{path}: cannot be read as GGUF ({type(exc).__name__}: {exc})") from exc


def read_config(reader: Any, path: str) -> DecoderConfig:
    arch = _require(reader, path, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not supported by the engine; supported: "
                         f"{sorted(SUPPORTED_ARCHITECTURES)}")
    for key in (f"{arch}.rope.scaling.type",):
        scaling = _field(reader, key)
        if scaling not in (None, "none", "linear") or (
            scaling == "linear" and float(_field(reader, f"{arch}.rope.scaling.factor") or 1.0) != 1.0
        ):
            raise ValueError(f"{path}: RoPE scaling {scaling!r} is not supported by the engine")
    n_embd = int(_require(reader, path, f"{arch}.embedding_length"))
    n_head = int(_require(reader, path, f"{arch}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    if n_head <= 0 or n_embd <= 0 or n_head_kv <= 0:
        raise ValueError(f"{path}: embedding_length and head counts must be positive")
    head_dim = int(_field(reader, f"{arch}.attention.key_length") or n_embd // n_head)
    names = {t.name for t in reader.tensors}
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise ValueError(f"{path}: tensor 'token_embd.weight' is missing")
    n_vocab = int(_field(reader, f"{arch}.vocab_size") or int(embd.shape[1]))
    return DecoderConfig(
        arch=str(arch),
        n_layer=int(_require(reader, path, f"{arch}.block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_ff=int(_require(reader, path, f"{arch}.feed_forward_length")),
        n_vocab=n_vocab,
        n_rot=int(_field(reader, f"{arch}.rope.dimension_count") or head_dim),
        rope_base=float(_field(reader, f"{arch}.rope.freq_base") or 10000.0),
        rope_neox=SUPPORTED_ARCHITECTURES[arch] == "neox",
        rms_eps=float(_require(reader, path, f"{arch}.attention.layer_norm_rms_epsilon")),
        context_length=int(_field(reader, f"{arch}.context_length") or 2048),
        tied_embeddings="output.weight" not in names,
    )


def _engine_array(tensor: Any, path: str, dequantized: list[str]) -> tuple[int, np.ndarray]:
    """(ggml type id the engine understands, array) for one GGUF tensor."""
    import gguf
    from gguf import quants

    ttype = gguf.GGMLQuantizationType(int(tensor.tensor_type))
    cols = int(tensor.shape[0])
    rows = int(np.prod(tensor.shape[1:], dtype=np.int64)) if len(tensor.shape) > 1 else 1
    if ttype.name in NATIVE_TYPES:
        data = np.asarray(tensor.data)
        if ttype.name == "F32":
            expected = rows * cols * 4
        else:
            block_elems, block_bytes = gguf.GGML_QUANT_SIZES[ttype]
            expected = rows * (cols // block_elems) * block_bytes
        if data.nbytes != expected:
            raise ValueError(f"{path}: tensor {tensor.name} holds {data.nbytes} bytes, expected {expected} "
                             "(truncated file?)")
        return NATIVE_TYPES[ttype.name], data
    try:
        if ttype in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16):
            values = quants.dequantize(np.asarray(tensor.data).view(np.uint8), ttype)
        else:
            values = quants.dequantize(np.asarray(tensor.data), ttype)
    except NotImplementedError:
        raise ValueError(f"{path}: tensor {tensor.name} has quantization type {ttype.name}, which neither the engine "
                         f"nor gguf.quants can decode; supported natively: {', '.join(NATIVE_TYPES)}") from None
    except Exception as exc:
        raise ValueError(f"{path}: tensor {tensor.name} ({ttype.name}) cannot be decoded: {exc}") from exc
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.size != rows * cols:
        raise ValueError(f"{path}: tensor {tensor.name} decodes to {values.size} values, expected {rows * cols} "
                         "(truncated file?)")
    dequantized.append(f"{tensor.name} ({ttype.name})")
    return 0, values.reshape(rows, cols) if rows > 1 else values.reshape(cols)


def read_gguf(path: Union[str, os.PathLike], reader: Any = None) -> GgufModel:
    """Config, tokenizer and engine weights of the GGUF at ``path`` (``reader``: an already open GGUFReader)."""
    import gguf

    from ..tokenizer import Tokenizer

    path = os.fspath(path)
    if reader is None:
        reader = open_reader(path)
    config = read_config(reader, path)
    tokenizer = Tokenizer.from_gguf_reader(reader, source=path)
    weights: dict[str, tuple[int, np.ndarray]] = {}
    tensor_types: dict[str, int] = {}
    dequantized: list[str] = []
    wanted = {"token_embd", "output_norm", "output", "rope_freqs"}
    for t in reader.tensors:
        name = t.name[: -len(".weight")] if t.name.endswith(".weight") else t.name
        if not (name in wanted or name.startswith("blk.")):
            continue
        tname = gguf.GGMLQuantizationType(int(t.tensor_type)).name
        tensor_types[tname] = tensor_types.get(tname, 0) + 1
        weights[name] = _engine_array(t, path, dequantized)
    return GgufModel(
        path=path,
        config=config,
        tokenizer=tokenizer,
        weights=weights,
        tensor_types=tensor_types,
        dequantized=dequantized,
        chat_template=_field(reader, "tokenizer.chat_template"),
        name=str(_field(reader, "general.name") or ""),
    )
