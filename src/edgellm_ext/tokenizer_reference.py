"""Reference tokenizers for tests and benchmarks: Hugging Face ``tokenizers`` built from a GGUF vocabulary.

One place for the construction that tests/test_tokenizer.py checks ids against, tools/bench_tokenizer.py and the
``cpu`` benchmark suite time against. The HF tokenizer gets the GGUF's tokens and merges and the pre-tokenizer
that matches each ``tokenizer.ggml.pre`` value (SmolLM2's tokenizer.json: Digits(individual) + ByteLevel;
Llama-3 / Qwen2: their Split regex + ByteLevel; gpt2: ByteLevel's own regex), so any difference in ids is
edgellm_ext's. Needs the optional ``tokenizers`` package (imported on use; ImportError otherwise).
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["HF_PRE_TOKENIZERS", "LLAMA3_REGEX", "QWEN2_REGEX", "gguf_vocab", "hf_tokenizer", "random_corpus"]

#: Llama-3's pre-tokenizer split regex (its tokenizer.json); Qwen2's differs only in single digits.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")

#: ``tokenizer.ggml.pre`` values :func:`hf_tokenizer` can mirror.
HF_PRE_TOKENIZERS = ("smollm", "gpt2", "llama3", "qwen2")


def gguf_vocab(reader: Any) -> dict[str, list]:
    """{"tokens", "merges", "types"} from an open ``gguf.GGUFReader`` (``tokenizer.ggml.*`` metadata)."""
    f = reader.fields
    missing = [k for k in ("tokens", "merges", "token_type") if f"tokenizer.ggml.{k}" not in f]
    if missing:
        raise ValueError(f"GGUF has no tokenizer.ggml.{missing[0]} (needed for a reference tokenizer)")
    return {
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "merges": f["tokenizer.ggml.merges"].contents(),
        "types": f["tokenizer.ggml.token_type"].contents(),
    }


def hf_tokenizer(vocab: dict, pre: str, *, special: bool) -> Any:
    """A ``tokenizers.Tokenizer`` equivalent to edgellm_ext's for pre-tokenizer ``pre`` (one of
    :data:`HF_PRE_TOKENIZERS`). ``special``: whether CONTROL tokens in the text are recognised (edgellm_ext's
    ``parse_special``). Encode with ``add_special_tokens=False`` (no BOS) to compare with ``encode(add_bos=False)``."""
    import tokenizers
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

    if pre not in HF_PRE_TOKENIZERS:
        raise ValueError(f"pre: expected one of {HF_PRE_TOKENIZERS}, got {pre!r}")
    ids = {t: i for i, t in enumerate(vocab["tokens"])}
    merges = [tuple(m.split(" ")) for m in vocab["merges"]]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre == "smollm":
        pre_tok = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    elif pre == "gpt2":
        pre_tok = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        regex = LLAMA3_REGEX if pre == "llama3" else QWEN2_REGEX
        pre_tok = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False), byte_level]
        )
    model = models.BPE(vocab=ids, merges=merges, ignore_merges=(pre == "llama3"))
    t = tokenizers.Tokenizer(model)
    t.pre_tokenizer = pre_tok
    t.decoder = decoders.ByteLevel()
    controls = [tok for tok, ty in zip(vocab["tokens"], vocab["types"]) if ty == 3]
    t.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in controls])
    # Without parse_special edgellm_ext treats control tokens as text; HF's equivalent switch:
    t.encode_special_tokens = not special
    return t


def random_corpus(n: int, seed: int) -> list[str]:
    """Seeded random strings mixing scripts, digits, punctuation, whitespace runs and apostrophes."""
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " ",
        "   \t\n\r",
        ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
        "'s'S't're'VE'll'd'M",
        "日本語中文한국어",
        "مرحبا",
        "éüñçøåßœ",
        "😀👍🏽❤️👨‍👩‍👧\u200d",
        "٣٤½²Ⅻ①",
        "\u00a0\u2003\u3000\u2028\u0085",
    ]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            pool = rng.choice(pools)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out
