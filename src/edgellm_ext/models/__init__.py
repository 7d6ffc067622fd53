"""Model descriptions: the registry of real configs, and loaders from GGUF metadata or a Hugging Face config.json.

>>> from edgellm_ext.models import get_model
>>> get_model("SmolLM2-135M").projection_shapes()["qkv"]
(960, 576)
"""

from __future__ import annotations

from .estimate import kernel_only_token_estimate
from .registry import MODELS, ModelConfig, get_model, model_names, smollm2_gguf_path

__all__ = ["MODELS", "ModelConfig", "get_model", "kernel_only_token_estimate", "model_names", "smollm2_gguf_path"]

# The CPU decode engine (models/engine.py): Model.load(path, device="cpu", n_threads=...).generate(...)
from .engine import Model  # noqa: E402

__all__ += ["Model"]
