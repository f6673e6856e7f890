"""Benchmark of one GRPO step (synergy.train.grpo): time split into generation, log-probs and update.

Builds the tiny Qwen2.5-VL at the DEFAULT ``TinyModelConfig`` (random weights; 112 px images,
16 visual tokens per image) with a tokenizer trained on the synthetic suite's text, and runs
``train_grpo`` on synthetic image questions: ``--prompts`` prompts x G=``--generations`` rollouts
per step, ``--max-new-tokens`` new tokens at most, the paper's 2 updates per step (mini-batch =
half the prompts), kl_coef 0.005 (so the reference pass is included) and the reasoning
instruction in the prompt. The first step is a warm-up; the table averages the next ``--steps``.

    python benchmarks/bench_grpo_step.py [--threads 2] [--steps 3]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--micro-batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
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
    settings = GRPOSettings(learning_rate=1e-6, steps=args.steps + 1, prompts_per_step=args.prompts,
                            mini_batch_size=args.prompts // 2, num_generations=args.generations,
                            micro_batch_size=args.micro_batch_size, max_new_tokens=args.max_new_tokens,
                            kl_coef=0.005, save_every_steps=1000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model(model, processor, tmp / "init")
        t0 = time.perf_counter()
        train_grpo(tmp / "init", rows, tmp / "out", log_path=tmp / "metrics.parquet", state_dir=tmp / "state",
                   cfg=settings, seed=0, grading_timeout_s=5.0)
        wall = time.perf_counter() - t0
        df = pl.read_parquet(tmp / "metrics.parquet")

    timed = df.filter(pl.col("step") > 1)
    n_seq = args.prompts * args.generations
    print(f"model: default TinyModelConfig, {params['total'] / 1e6:.2f} M params ({params['vision'] / 1e6:.2f} M "
          f"vision, frozen), vocab {len(tok)}, {torch.get_num_threads()} threads, CPU")
    print(f"GRPO step: {args.prompts} prompts x G={args.generations} = {n_seq} sequences, max_new_tokens "
          f"{args.max_new_tokens}, 2 updates of {args.prompts // 2} prompts, micro-batch {args.micro_batch_size} "
          f"sequences, reference model on (kl_coef 0.005)\n")
    print(f"| {'step':>4} | {'generation (s)':>14} | {'log-probs (s)':>13} | {'update (s)':>10} | {'total (s)':>9} | "
          f"{'mean resp. tokens':>17} | {'truncated':>9} |")
    print(f"|{'-' * 6}|{'-' * 16}|{'-' * 15}|{'-' * 12}|{'-' * 11}|{'-' * 19}|{'-' * 11}|")
    for r in df.iter_rows(named=True):
        tag = f"{r['step']}{'*' if r['step'] == 1 else ''}"
        print(f"| {tag:>4} | {r['time_generate']:>14.2f} | {r['time_logprobs']:>13.2f} | {r['time_update']:>10.2f} | "
              f"{r['seconds']:>9.2f} | {r['response_length']:>17.1f} | {r['truncated_rate']:>9.2f} |")
    mean = {c: timed[c].mean() for c in ("time_generate", "time_logprobs", "time_update", "seconds", "response_length")}
    share = {c: 100 * mean[c] / mean["seconds"] for c in ("time_generate", "time_logprobs", "time_update")}
    print(f"| {'mean':>4} | {mean['time_generate']:>14.2f} | {mean['time_logprobs']:>13.2f} | "
          f"{mean['time_update']:>10.2f} | {mean['seconds']:>9.2f} | {mean['response_length']:>17.1f} | {'':>9} |")
    print(f"\n(* warm-up step, not in the mean; mean over steps 2..{args.steps + 1})")
    print(f"share of a step: generation {share['time_generate']:.0f} %, log-probs {share['time_logprobs']:.0f} %, "
          f"update {share['time_update']:.0f} %; generated tokens/s {n_seq * mean['response_length'] / mean['time_generate']:.0f}")
    print(f"whole train_grpo call (load, {args.steps + 1} steps, saves): {wall:.1f} s; "
          f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
