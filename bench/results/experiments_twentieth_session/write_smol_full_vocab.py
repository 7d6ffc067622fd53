"""Twentieth session: a random GGUF with SmolLM2-135M's shapes including its vocabulary (49152 tokens) and its
types (Q4_1 matrices, a Q8_0 token embedding that is also the tied LM head), for tools/engine_probe.py --model.
Usage: python write_smol_full_vocab.py OUT.gguf"""
import sys
from pathlib import Path

import gguf

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from test_engine import write_tiny_gguf  # noqa: E402

q41 = gguf.GGMLQuantizationType.Q4_1
types = {f"{m}.weight": q41 for m in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]}
types["token_embd.weight"] = gguf.GGMLQuantizationType.Q8_0
write_tiny_gguf(Path(sys.argv[1]), "llama", types=types, dims=(576, 9, 3, 64, 1536), n_layer=30, seed=1,
                extra_tokens=49152 - 258)
