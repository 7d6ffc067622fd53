"""Command line: ``python -m edgellm_ext generate --model PATH --prompt "..." -n 64``.

Streams the generated text to stdout; the model summary and the timings (prefill and decode tok/s, time to first
token) go to stderr, so stdout holds only the text.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _generate(args: argparse.Namespace) -> int:
    from .models import Model

    try:
        model = Model.load(args.model, device=args.device, n_threads=args.threads, n_ctx=args.ctx, simd=args.simd)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: no usable GPU
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(model.summary(), file=sys.stderr)
    prompt = args.prompt
    if args.chat:
        prompt = model.apply_chat_template([{"role": "user", "content": prompt}])
    try:
        for piece in model.generate_text(prompt, args.n, temperature=args.temperature, top_k=args.top_k,
                                         top_p=args.top_p, seed=args.seed):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except ValueError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("\n")
    s = model.last_stats
    print(f"prompt {s.n_prompt_tokens} tokens: prefill {s.prefill_tok_s:.1f} tok/s (time to first token "
          f"{s.ttft_s * 1e3:.1f} ms); decode {s.n_generated - 1} tokens: {s.decode_tok_s:.1f} tok/s "
          f"({f'{model.n_threads} threads, {model.simd}' if model.device == 'cpu' else 'cuda, one graph per token'})",
          file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgellm_ext", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate text from a GGUF model on the CPU or a CUDA GPU")
    g.add_argument("--model", required=True, help="path of a GGUF file (llama or qwen2 architecture)")
    g.add_argument("--prompt", required=True)
    g.add_argument("-n", "--max-new-tokens", dest="n", type=int, default=64)
    g.add_argument("--threads", type=int, default=None,
                   help="CPU worker threads (default: all CPUs available; ignored with --device cuda)")
    g.add_argument("--ctx", type=int, default=2048, help="KV cache positions (default 2048)")
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cpu (default) or cuda (one CUDA graph per token; Q4_0/Q4_1/Q8_0 weights as stored, others as fp16)")
    g.add_argument("--simd", default=None, help="auto (default), scalar, avx2 or neon")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the GGUF's chat template")
    g.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--quiet", action="store_true", help="no model summary")
    args = parser.parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
