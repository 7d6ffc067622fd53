"""Byte-level BPE tokenizer (GPT-2 / SmolLM / Qwen2 / Llama-3 family) loaded from a GGUF file's metadata.

The tokenization itself is C++ (src/cpp/tokenizer.h describes the algorithm); this module reads the
``tokenizer.ggml.*`` metadata with the ``gguf`` package and validates arguments.

Special tokens: CONTROL tokens such as ``<|im_start|>`` are recognised in the text only with
``parse_special=True`` (otherwise they are ordinary text, encoded byte by byte like anything else, which is the
safe choice for untrusted text); USER_DEFINED tokens are always recognised, as llama.cpp does.

Decoding: ``decode`` returns str; ids that end inside a multi-byte UTF-8 character (common when streaming one
token at a time) give bytes that are not valid UTF-8. ``errors="strict"`` (the default) raises
UnicodeDecodeError (a ValueError) for them, ``errors="replace"`` substitutes U+FFFD; ``decode_bytes`` returns the
raw bytes for a caller that buffers partial characters itself.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import _core

__all__ = ["Tokenizer", "TOKEN_TYPE_NAMES", "supported_pre_tokenizers"]

# GGUF tokenizer.ggml.token_type values.
TOKEN_TYPE_NAMES = {0: "undefined", 1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}


def supported_pre_tokenizers() -> list[str]:
    """Values of ``tokenizer.ggml.pre`` this tokenizer implements."""
    return [s.strip() for s in _core.supported_pre_tokenizers().split(",")]


def _field_value(reader: Any, key: str) -> Any:
    """The value of a GGUF metadata field (a scalar, str, or list), or None when absent."""
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


def _field_bytes_list(reader: Any, key: str) -> Optional[list[bytes]]:
    """A GGUF string array as raw bytes (no UTF-8 decoding: the C++ side validates)."""
    field = reader.fields.get(key)
    if field is None:
        return None
    return [bytes(field.parts[i]) for i in field.data]


class Tokenizer:
    """A byte-level BPE tokenizer.

    Build one with :meth:`from_gguf` (or :meth:`from_vocab` for a vocabulary you have in memory).
    Thread-safe: the object is immutable and encode/decode release the GIL.
    """

    def __init__(self, core: Any, *, pre: str, add_bos_default: bool, source: str) -> None:
        self._core = core
        self.pre = pre
        self.add_bos_default = add_bos_default
        self.source = source

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_vocab(
        cls,
        tokens: Sequence[Union[str, bytes]],
        merges: Sequence[Union[str, bytes]],
        *,
        token_types: Optional[Sequence[int]] = None,
        pre: str = "default",
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        add_bos: bool = False,
        ignore_merges: bool = False,
    ) -> "Tokenizer":
        """Tokenizer from tokens (GPT-2 byte-level form, e.g. ``"Ġthe"``), merges (``"Ġ t"``, rank = index),
        optional GGUF token types, pre-tokenizer name, BOS/EOS ids. ValueError names the first problem."""

        def as_bytes(seq: Sequence[Union[str, bytes]], what: str) -> list[bytes]:
            out = []
            for i, t in enumerate(seq):
                if isinstance(t, str):
                    out.append(t.encode("utf-8"))
                elif isinstance(t, (bytes, bytearray)):
                    out.append(bytes(t))
                else:
                    raise TypeError(f"{what}[{i}]: expected str or bytes, got {type(t).__name__}")
            return out

        if not isinstance(pre, str):
            raise TypeError(f"pre: expected str, got {type(pre).__name__}")
        types = [1] * len(tokens) if token_types is None else [int(t) for t in token_types]
        core = _core.BpeTokenizer(
            as_bytes(tokens, "tokens"),
            types,
            as_bytes(merges, "merges"),
            pre,
            -1 if bos_id is None else int(bos_id),
            -1 if eos_id is None else int(eos_id),
            bool(ignore_merges),
        )
        return cls(core, pre=pre, add_bos_default=bool(add_bos), source="<vocab>")

    @classmethod
    def from_gguf(cls, path: Union[str, os.PathLike]) -> "Tokenizer":
        """Read ``tokenizer.ggml.*`` from a GGUF file (tensors are not loaded).

        Raises FileNotFoundError, ValueError when the file has no tokenizer metadata, when
        ``tokenizer.ggml.model`` is not ``"gpt2"`` (byte-level BPE; SentencePiece "llama" vocabularies are not
        supported) or when ``tokenizer.ggml.pre`` names a pre-tokenizer this module does not implement. A file
        without ``tokenizer.ggml.pre`` (old conversions) gets "default", the GPT-2 regex, as llama.cpp does.
        """
        import gguf  # imported here: only GGUF loading needs it

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"GGUF file not found: {path}")
        try:
            reader = gguf.GGUFReader(path, "r")
        except Exception as exc:  # the gguf package raises assorted errors for non-GGUF input
            raise ValueError(f"{path}: cannot be read as GGUF ({type(exc).__name__}: {exc})") from exc
        return cls.from_gguf_reader(reader, source=path)

    @classmethod
    def from_gguf_reader(cls, reader: Any, *, source: str = "<gguf>") -> "Tokenizer":
        """As :meth:`from_gguf`, from an open ``gguf.GGUFReader`` (reading a GGUF file is the slow part; a caller
        that also loads the weights can share its reader). ``source`` names the file in error messages."""
        path = source
        model = _field_value(reader, "tokenizer.ggml.model")
        tokens = _field_bytes_list(reader, "tokenizer.ggml.tokens")
        if model is None or tokens is None:
            raise ValueError(
                f"{path}: no tokenizer metadata (tokenizer.ggml.model and tokenizer.ggml.tokens are required)"
            )
        if model != "gpt2":
            raise ValueError(
                f"{path}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') is supported"
            )
        merges = _field_bytes_list(reader, "tokenizer.ggml.merges")
        if merges is None:
            raise ValueError(f"{path}: tokenizer.ggml.merges is missing (a BPE vocabulary needs its merges)")
        token_types = _field_value(reader, "tokenizer.ggml.token_type")
        pre = _field_value(reader, "tokenizer.ggml.pre")
        if pre is None:
            pre = "default"
        bos = _field_value(reader, "tokenizer.ggml.bos_token_id")
        eos = _field_value(reader, "tokenizer.ggml.eos_token_id")
        add_bos = _field_value(reader, "tokenizer.ggml.add_bos_token")
        core = _core.BpeTokenizer(
            tokens,
            [] if token_types is None else [int(t) for t in token_types],
            merges,
            str(pre),
            -1 if bos is None else int(bos),
            -1 if eos is None else int(eos),
            False,
        )
        return cls(core, pre=str(pre), add_bos_default=bool(add_bos), source=path)

    # ------------------------------------------------------------------------------------------------ queries
    @property
    def vocab_size(self) -> int:
        return int(self._core.vocab_size)

    @property
    def bos_id(self) -> Optional[int]:
        """BOS token id, or None when the vocabulary has none."""
        v = int(self._core.bos_id)
        return None if v < 0 else v

    @property
    def eos_id(self) -> Optional[int]:
        """EOS token id, or None when the vocabulary has none."""
        v = int(self._core.eos_id)
        return None if v < 0 else v

    def token_type(self, token_id: int) -> str:
        """GGUF type of a token: "normal", "control", "user_defined", ... (IndexError when out of range)."""
        return TOKEN_TYPE_NAMES[int(self._core.token_type(int(token_id)))]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, pre={self.pre!r}, source={self.source!r})"

    # ------------------------------------------------------------------------------------------ encode/decode
    @staticmethod
    def _text_bytes(text: object) -> bytes:
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise ValueError(f"text: cannot be encoded as UTF-8 ({exc.reason} at index {exc.start})") from exc

    def encode(self, text: str, *, add_bos: Optional[bool] = None, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``.

        add_bos: prepend the BOS token (None: the model's default, GGUF ``tokenizer.ggml.add_bos_token``);
        ValueError when requested and the vocabulary has no BOS token. parse_special: recognise CONTROL tokens
        written in the text (see the module docstring).
        """
        return self.encode_array(text, add_bos=add_bos, parse_special=parse_special).tolist()

    def encode_array(self, text: str, *, add_bos: Optional[bool] = None, parse_special: bool = False) -> np.ndarray:
        """As :meth:`encode`, returning an int32 numpy array [n_tokens]."""
        data = self._text_bytes(text)
        bos = self.add_bos_default if add_bos is None else add_bos
        return self._core.encode(data, bool(bos), bool(parse_special))

    def _ids_array(self, ids: Union[Iterable[int], np.ndarray]) -> np.ndarray:
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids: expected a sequence of ints, got {type(ids).__name__}")
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise TypeError(f"ids: expected a 1-D integer array, got dtype {ids.dtype}, shape {ids.shape}")
            arr = ids
        else:
            ids = list(ids)
            for i, v in enumerate(ids):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TypeError(f"ids[{i}]: expected int, got {type(v).__name__}")
            arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = self.vocab_size
        bad = np.flatnonzero((arr < 0) | (arr >= n))
        if bad.size:
            i = int(bad[0])
            raise IndexError(f"ids[{i}] = {int(arr[i])} is outside the vocabulary [0, {n})")
        return np.ascontiguousarray(arr, dtype=np.int32)

    def decode_bytes(self, ids: Union[Iterable[int], np.ndarray]) -> bytes:
        """The bytes the tokens stand for (possibly ending inside a UTF-8 character)."""
        return bytes(self._core.decode(self._ids_array(ids)))

    def decode(self, ids: Union[Iterable[int], np.ndarray], *, errors: str = "strict") -> str:
        """Text of ``ids``. errors: "strict" (UnicodeDecodeError, a ValueError, on invalid UTF-8) or "replace"."""
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors: expected 'strict' or 'replace', got {errors!r}")
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def pre_tokenize(self, text: str) -> list[str]:
        """The pre-tokenizer's pieces of ``text`` (no special-token handling); for tests and debugging."""
        return [p.decode("utf-8") for p in self._core.pre_tokenize(self._text_bytes(text))]
