"""Benchmark of the ``hf`` rollout backend: batched ``generate()`` vs one sequence at a time.

Builds the tiny Qwen2.5-VL at the DEFAULT ``TinyModelConfig`` (random weights; 112 px images,
16 visual tokens), takes 32 image prompts x n=16 samples and compares generated tokens per second
of one ``synergy.generate.generate`` call (batched, ``num_return_sequences``) with a loop that
generates one sequence per call. Every sequence generates exactly ``max_new_tokens`` tokens
(``min_new_tokens = max_new_tokens``), so both sides do the same work. The loop is timed on a
subset of sequences and extrapolated to all of them (printed as such).

    python benchmarks/bench_generate.py [--threads 2] [--loop-sequences 32]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from dataclasses import replace

import torch
from PIL import Image, ImageDraw

from synergy.generate import SamplingConfig, generate
from synergy.models import count_parameters
from synergy.prompts import Prompt
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circles", "squares", "triangles"]


def corpus(rng: random.Random, n: int = 3000) -> list[str]:
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        c, s = rng.choice(COLOURS), rng.choice(SHAPES)
        lines.append(f"How many {c} {s} are there in the image?")
        lines.append(f"<think> I count {a} {c} {s} and {b} more, so {a} + {b} = {a + b}. </think> \\boxed{{{a + b}}}")
    return lines


def image_prompt(rng: random.Random, size: int) -> Prompt:
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(1, 6)):
        x, y = rng.randrange(0, size - 20), rng.randrange(0, size - 20)
        draw.rectangle([x, y, x + 16, y + 16], fill=rng.choice(COLOURS))
    q = f"How many {rng.choice(COLOURS)} {rng.choice(SHAPES)} are there?"
    return Prompt([{"role": "user", "content": [{"type": "text", "text": q}, {"type": "image"}]}], [im])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-batch-sequences", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loop-sequences", type=int, default=32, help="sequences timed in the one-at-a-time loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rng = random.Random(0)
    cfg = TinyModelConfig()
    tok = train_tokenizer(corpus(rng), cfg.vocab_size)
    processor = build_processor(tok, cfg.image_size)
    model = build_tiny_model(cfg, tok).to(args.device)
    prompts = [image_prompt(rng, cfg.image_size) for _ in range(args.prompts)]
    params = count_parameters(model)
    print(f"model: default TinyModelConfig, {params['total'] / 1e6:.2f} M params, vocab {len(tok)}, "
          f"{torch.get_num_threads()} threads, device {model.device}")

    mnt = args.max_new_tokens
    batched_cfg = SamplingConfig(n=args.n, max_new_tokens=mnt, min_new_tokens=mnt, seed=0,
                                 max_batch_sequences=args.max_batch_sequences)
    single_cfg = SamplingConfig(n=1, max_new_tokens=mnt, min_new_tokens=mnt, seed=0)
    generate(model, processor, prompts[:2], SamplingConfig(n=2, max_new_tokens=4))  # warm-up

    def loop(ks) -> tuple[float, int]:
        """One sequence per generate() call, cycling over the prompts."""
        t0, ntok = time.perf_counter(), 0
        for k in ks:
            c = generate(model, processor, [prompts[k % len(prompts)]], replace(single_cfg, seed=k))[0][0]
            ntok += c.num_tokens
        return time.perf_counter() - t0, ntok

    # The loop subset is timed in two halves, before and after the batched run, so that load from
    # other processes on a shared machine hits both sides alike.
    half = args.loop_sequences // 2
    t_a, n_a = loop(range(half))
    t0 = time.perf_counter()
    out = generate(model, processor, prompts, batched_cfg)
    t_batched = time.perf_counter() - t0
    t_b, n_b = loop(range(half, args.loop_sequences))
    t_loop, tok_loop = t_a + t_b, n_a + n_b
    n_seq = sum(len(o) for o in out)
    tok_batched = sum(c.num_tokens for o in out for c in o)
    t_loop_all = t_loop / args.loop_sequences * n_seq

    rate_b, rate_l = tok_batched / t_batched, tok_loop / t_loop
    print(f"\n{args.prompts} image prompts x n={args.n} = {n_seq} sequences, {mnt} new tokens each "
          f"(min_new_tokens={mnt}), max_batch_sequences={args.max_batch_sequences}\n")
    print(f"| {'mode':<40} | {'sequences':>9} | {'tokens':>7} | {'time (s)':>9} | {'tok/s':>7} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 9}|{'-' * 11}|{'-' * 9}|")
    print(f"| {'batched generate()':<40} | {n_seq:>9} | {tok_batched:>7} | {t_batched:>9.2f} | {rate_b:>7.0f} |")
    print(f"| {'one sequence per call (measured)':<40} | {args.loop_sequences:>9} | {tok_loop:>7} | {t_loop:>9.2f} | {rate_l:>7.0f} |")
    print(f"| {'one sequence per call (extrapolated)':<40} | {n_seq:>9} | {n_seq * mnt:>7} | {t_loop_all:>9.2f} | {rate_l:>7.0f} |")
    print(f"(loop timed on {args.loop_sequences} of {n_seq} sequences and extrapolated linearly; "
          f"load average at the end: {os.getloadavg()[0]:.2f})")
    print(f"\nspeed-up (batched vs one at a time, tokens/s): {rate_b / rate_l:.1f}x")


if __name__ == "__main__":
    main()
