"""Can the tiny language model learn a function of one prompt token, and of two? Per initialisation scale.

    python benchmarks/probe_learnability.py [--inits 0.02,0.088] [--steps 600] [--tasks copy,warm,colour,pair]

A fresh tiny Qwen2.5-VL with the embedded study's sizes (synergy.tiny_model.TinyModelConfig defaults) is
trained from scratch, text only, on one of four question types with short answers ("The answer is X."):

* ``copy``   "The shape is a red circle. What colour is the shape?" -> red (the answer is a prompt token)
* ``warm``   "The shape is red. Is it warm?" -> yes for red and yellow (a function of one prompt token)
* ``colour`` "The shape is red. Is it blue?" -> no (equality of two prompt tokens: 16 cases)
* ``pair``   "The shape is a red circle. Is there a blue circle?" -> no (equality of two colour-shape pairs)

Each step draws 16 fresh questions (AdamW, lr 1e-3, 20 warm-up steps, clipping 1.0: the pretraining recipe of
synergy/pretrain.py). Every 50 steps the model answers 200 held-out questions (the candidate answer with the
higher teacher-forced likelihood). It prints, per task and initialisation std of the text weights
(``base_model.tiny.initializer_range``), the first step with held-out accuracy >= 0.95 and the final accuracy.
The pair and colour tasks are what the suite's perception questions need (is there a red circle; which colour
is in row 2, column 3): docs/embedded-study.md §9. One task at one std takes 1-3 min on one core.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from synergy.prompts import Prompt
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer
from synergy.train.sft import collate_sft, row_nll, sft_loss

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]
TASKS = ("copy", "warm", "colour", "pair")


def question(task: str, rng: random.Random) -> tuple[str, str, list[str]]:
    """(question, answer, candidate answers) of one drawn question; equality tasks match half of the time."""
    c1, s1 = rng.choice(COLOURS), rng.choice(SHAPES)
    if task == "copy":
        return f"The shape is a {c1} {s1}. What colour is the shape?", c1, COLOURS
    if task == "warm":
        return f"The shape is {c1}. Is it warm?", "yes" if c1 in ("red", "yellow") else "no", ["yes", "no"]
    if task == "colour":
        c2 = c1 if rng.random() < 0.5 else rng.choice(COLOURS)
        return f"The shape is {c1}. Is it {c2}?", "yes" if c1 == c2 else "no", ["yes", "no"]
    if task == "pair":
        c2, s2 = (c1, s1) if rng.random() < 0.5 else (rng.choice(COLOURS), rng.choice(SHAPES))
        return f"The shape is a {c1} {s1}. Is there a {c2} {s2}?", "yes" if (c1, s1) == (c2, s2) else "no", ["yes", "no"]
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def _prompt(text: str) -> Prompt:
    return Prompt(messages=[{"role": "user", "content": [{"type": "text", "text": text}]}])


def _tokenizer():
    corpus = [f"The shape is {c}. Is it {c}? Is it warm? The shape is a {c} {s}. What colour is the shape? "
              f"Is there a {c} {s}? The answer is {c}. The answer is yes. The answer is no."
              for c in COLOURS for s in SHAPES] * 20
    return train_tokenizer(corpus, 1024)


def held_out_accuracy(model, processor, held: list[tuple[str, str, list[str]]]) -> float:
    """Share of held-out questions whose gold answer is the likelier candidate (teacher-forced)."""
    candidates = held[0][2]
    scores = []
    model.eval()
    with torch.no_grad():
        for a in candidates:
            batch = collate_sft(processor, [_prompt(q) for q, _, _ in held], [f"The answer is {a}." for _ in held])
            scores.append(-row_nll(model, batch))
    model.train()
    pred = torch.stack(scores, 1).argmax(1).tolist()
    return sum(candidates[p] == gold for p, (_, gold, _) in zip(pred, held)) / len(held)


def run(task: str, init: float, steps: int, seed: int = 0) -> tuple[int | None, float, list[tuple[int, float]]]:
    """Train one fresh model; returns (first step with accuracy >= 0.95 or None, final accuracy, the curve)."""
    rng = random.Random(seed)
    tokenizer = _tokenizer()
    processor = build_processor(tokenizer, 112)
    model = build_tiny_model(TinyModelConfig(initializer_range=init, seed=seed), tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    held = [question(task, rng) for _ in range(200)]
    curve, first = [], None
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 20)
        rows = [question(task, rng) for _ in range(16)]
        loss, _ = sft_loss(model, collate_sft(processor, [_prompt(q) for q, _, _ in rows], [f"The answer is {a}." for _, a, _ in rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 50 == 0 or step == steps - 1:
            acc = held_out_accuracy(model, processor, held)
            curve.append((step + 1, acc))
            if first is None and acc >= 0.95:
                first = step + 1
    return first, curve[-1][1], curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inits", default="0.02,0.088", help="comma-separated std of the text weights")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| task | init std | first step with held-out accuracy >= 0.95 | accuracy at step {args.steps} | seconds |")
    print("|---|---|---|---|---|")
    for task in args.tasks.split(","):
        for init in (float(x) for x in args.inits.split(",")):
            t0 = time.monotonic()
            first, final, curve = run(task, init, args.steps)
            print(f"| {task} | {init:g} | {first if first is not None else f'not by {args.steps}'} | {final:.3f} | "
                  f"{time.monotonic() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
