"""Benchmark of one GRPO step (synergy.train.grpo): time split into generation, log-probs and update,
with and without prompt sharing (``grpo.share_prompt``; docs/grpo.md §1).

Builds the tiny Qwen2.5-VL at the DEFAULT ``TinyModelConfig`` (random weights; 112 px images,
16 visual tokens per image) with a tokenizer trained on the synthetic suite's text, and runs
``train_grpo`` on synthetic image questions with the paper's 2 updates per step (mini-batch = half
the prompts), kl_coef 0.005 (so the reference pass is included) and the reasoning instruction in
the prompt (about 100 prompt tokens with the image). Two shapes, each at G = 8 and 16:

- ``embedded``: 16 prompts, at most 16 new tokens (the embedded study's answers are about 15 tokens);
- ``paper``: 4 prompts, at most 256 new tokens: a short prompt and a long answer, as in the
  paper's study (the random model rarely stops, so answers are about max_new_tokens long).

For every (shape, G) the step runs once with ``share_prompt: false`` (before) and once with
``true`` (after); each run's first step is a warm-up, the table gives the minimum over the next
``--steps`` steps of each column.

    python benchmarks/bench_grpo_step.py [--threads 2] [--steps 1] [--shapes embedded,paper] [--generations 8,16]

Columns: generation = sampling + grading + building the log-prob batch; log-probs = the old
policy's and the reference's passes over all sequences (no grad); update = forward + backward +
optimiser over all sequences (2 updates).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from synergy.config import GRPOSettings
from synergy.data.suite import build_train_set
from synergy.models import TinyModelConfig, build_processor, build_tiny_model, count_parameters, save_model, train_tokenizer
from synergy.pretrain import tokenizer_corpus
from synergy.train.grpo import train_grpo

TEMPLATES = {"count_all": 1.0, "count_colour": 1.0, "exists": 1.0, "colour_at": 1.0, "sum_colours": 1.0}
SHAPES = {"embedded": {"prompts": 16, "max_new_tokens": 16}, "paper": {"prompts": 4, "max_new_tokens": 256}}
COLUMNS = ("time_generate", "time_logprobs", "time_update", "seconds")


def run_one(init: Path, rows: list, tmp: Path, *, prompts: int, generations: int, max_new_tokens: int,
            micro_batch_size: int, steps: int, share: bool) -> dict:
    """Minimum over the timed steps of each time column, and the mean response length."""
    settings = GRPOSettings(learning_rate=1e-6, steps=steps + 1, prompts_per_step=prompts,
                            mini_batch_size=prompts // 2, num_generations=generations,
                            micro_batch_size=micro_batch_size, max_new_tokens=max_new_tokens,
                            kl_coef=0.005, save_every_steps=1000, share_prompt=share)
    name = f"p{prompts}g{generations}t{max_new_tokens}{'s' if share else ''}"
    train_grpo(init, rows, tmp / name, log_path=tmp / f"{name}.parquet", state_dir=tmp / f"{name}-state",
               cfg=settings, seed=0, grading_timeout_s=5.0)
    timed = pl.read_parquet(tmp / f"{name}.parquet").filter(pl.col("step") > 1)
    return {**{c: float(timed[c].min()) for c in COLUMNS}, "response_length": float(timed["response_length"].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="embedded,paper")
    ap.add_argument("--generations", default="8,16")
    ap.add_argument("--micro-batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1, help="timed steps (after one warm-up step)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    cfg = TinyModelConfig()
    rows = build_train_set("bench-grpo", 256, TEMPLATES, style="none", modality="image", seed=0,
                           image_size=cfg.image_size, max_objects=6, exclude=set())
    tok = train_tokenizer(tokenizer_corpus(rows), cfg.vocab_size)
    processor = build_processor(tok, cfg.image_size)
    model = build_tiny_model(cfg, tok)
    params = count_parameters(model)
    print(f"model: default TinyModelConfig, {params['total'] / 1e6:.2f} M params ({params['vision'] / 1e6:.2f} M "
          f"vision, frozen), vocab {len(tok)}, {torch.get_num_threads()} threads, CPU; 2 updates per step, "
          f"micro-batch {args.micro_batch_size} sequences, reference model on (kl_coef 0.005); minimum over "
          f"{args.steps} timed step(s) after a warm-up\n")
    print("| shape | prompts x G | resp. tokens | share_prompt | generation (s) | log-probs (s) | update (s) | "
          "step (s) | log-probs + update speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model(model, processor, tmp / "init")
        for shape in args.shapes.split(","):
            for G in (int(g) for g in args.generations.split(",")):
                res = {}
                for share in (False, True):
                    res[share] = run_one(tmp / "init", rows, tmp, generations=G, micro_batch_size=args.micro_batch_size,
                                         steps=args.steps, share=share, **SHAPES[shape])
                before = res[False]["time_logprobs"] + res[False]["time_update"]
                after = res[True]["time_logprobs"] + res[True]["time_update"]
                for share in (False, True):
                    r = res[share]
                    gain = f"{before / after:.2f}x" if share else ""
                    print(f"| {shape} | {SHAPES[shape]['prompts']} x {G} | {r['response_length']:.0f} | {share} | "
                          f"{r['time_generate']:.2f} | {r['time_logprobs']:.2f} | {r['time_update']:.2f} | "
                          f"{r['seconds']:.2f} | {gain} |", flush=True)
    print(f"\nwhole benchmark {time.perf_counter() - t_all:.0f} s; load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
