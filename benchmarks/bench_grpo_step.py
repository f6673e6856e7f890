"""Benchmark of one GRPO step (synergy.train.grpo): time split into generation, log-probs and update,
with and without prompt sharing (``grpo.share_prompt``; docs/grpo.md §1).

Builds the tiny Qwen2.5-VL at the DEFAULT ``TinyModelConfig`` (random weights; 112 px images,
16 visual tokens per image) with a tokenizer trained on the synthetic suite's text, sets a GRPO run
up with ``train_grpo``'s own pieces (``setup_run``: policy, reference model, optimiser; kl_coef
0.005, so the reference pass is included; the paper's 2 updates per step, mini-batch = half the
prompts; the reasoning instruction in the prompt: about 100 prompt tokens with the image), samples
one step's rollouts (``collect_rollouts``: the generation column) and then times the step's two
passes on those rollouts, ``score`` (old policy + reference log-probs: the log-probs column) and
``update`` (forward + backward + optimiser of both updates: the update column), alternately with
``share_prompt`` false (before) and true (after), ``--repeats`` times each; each column is the
minimum over the repeats, so the before/after ratio is measured within one run on the same
rollouts. Two shapes, each at G = 8 and 16:

- ``embedded``: 16 prompts, at most 16 new tokens (the embedded study's answers are about 15 tokens);
- ``paper``: 4 prompts, at most 256 new tokens: a short prompt and a long answer, as in the
  paper's study (the random model rarely stops, so answers are about max_new_tokens long).

    python benchmarks/bench_grpo_step.py [--threads 2] [--repeats 3] [--shapes embedded,paper] [--generations 8,16]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from synergy.config import GRPOSettings
from synergy.data.suite import build_train_set
from synergy.grading import Grader
from synergy.models import count_parameters, save_model
from synergy.pretrain import tokenizer_corpus
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer
from synergy.train.grpo.rollouts import collect_rollouts
from synergy.train.grpo.run import setup_run
from synergy.train.grpo.update import micro_plan, score, update
from synergy.train.losses import group_advantages


def clock() -> float:
    """CPU seconds of this process (all its threads): on a shared machine far steadier than wall time."""
    return time.process_time()


TEMPLATES = {"count_all": 1.0, "count_colour": 1.0, "exists": 1.0, "colour_at": 1.0, "sum_colours": 1.0}
SHAPES = {"embedded": {"prompts": 16, "max_new_tokens": 16}, "paper": {"prompts": 4, "max_new_tokens": 256}}


def time_step(init: Path, rows: list, tmp: Path, *, prompts: int, generations: int, max_new_tokens: int,
              micro_batch_size: int, repeats: int) -> dict:
    """Generation seconds, prompt/response tokens, and per share_prompt the minimum log-prob and update seconds."""
    cfg = GRPOSettings(learning_rate=1e-6, steps=1, prompts_per_step=prompts, mini_batch_size=prompts // 2,
                       num_generations=generations, micro_batch_size=micro_batch_size, max_new_tokens=max_new_tokens,
                       kl_coef=0.005, save_every_steps=1000)
    run, processor, _ = setup_run(init, rows, cfg, state_dir=tmp / f"state-{prompts}-{generations}-{max_new_tokens}",
                                  seed=0, ref_dir=None, image_position="after_text")
    t0 = clock()
    with Grader(timeout_s=5.0) as grader, torch.no_grad(), run.accelerator.autocast():
        ro = collect_rollouts(run.policy, processor, rows[:prompts], cfg, step_seed=0, grader=grader,
                              image_position="after_text")
    out = {"generation": clock() - t0, "response": float(ro.completion_mask.sum(1).float().mean()),
           "prompt": float((ro.attention_mask.sum(1) - ro.completion_mask.sum(1)).float().mean())}
    advantages = group_advantages(ro.rewards).reshape(-1)
    times = {False: ([], []), True: ([], [])}
    for _ in range(repeats):
        for share in (False, True):
            run.cfg = dataclasses.replace(cfg, share_prompt=share)
            plan = micro_plan(run, ro)
            t1 = clock()
            old, ref, _ = score(run, ro, plan)
            t2 = clock()
            update(run, ro, advantages, old, ref, 1, plan)
            t3 = clock()
            times[share][0].append(t2 - t1)
            times[share][1].append(t3 - t2)
    for share, (lp, up) in times.items():
        out[share] = {"logprobs": min(lp), "update": min(up)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="embedded,paper")
    ap.add_argument("--generations", default="8,16")
    ap.add_argument("--micro-batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed log-prob + update passes per setting (minimum)")
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
          f"micro-batch {args.micro_batch_size} sequences, reference model on (kl_coef 0.005); log-probs and update: "
          f"minimum of {args.repeats} alternating runs on the same rollouts\n")
    print("| shape | prompts x G | prompt / resp. tokens | share_prompt | generation (CPU s) | log-probs (CPU s) | "
          "update (CPU s) | step (CPU s) | log-probs + update speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    t_all = clock()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model(model, processor, tmp / "init")
        for shape in args.shapes.split(","):
            for G in (int(g) for g in args.generations.split(",")):
                r = time_step(tmp / "init", rows, tmp, generations=G, micro_batch_size=args.micro_batch_size,
                              repeats=args.repeats, **SHAPES[shape])
                before = r[False]["logprobs"] + r[False]["update"]
                for share in (False, True):
                    x = r[share]
                    gain = f"{before / (x['logprobs'] + x['update']):.2f}x" if share else ""
                    print(f"| {shape} | {SHAPES[shape]['prompts']} x {G} | {r['prompt']:.0f} / {r['response']:.0f} | "
                          f"{share} | {r['generation']:.2f} | {x['logprobs']:.2f} | {x['update']:.2f} | "
                          f"{r['generation'] + x['logprobs'] + x['update']:.2f} | {gain} |", flush=True)
    print(f"\nwhole benchmark {clock() - t_all:.0f} CPU s; load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
