"""Build and briefly pretrain the tiny Qwen2.5-VL base model of the embedded study.

The paper starts from Qwen2.5-VL-7B-Instruct (paper §2.1). The embedded study needs a base model
that, like an instruct model, already answers the suite's questions some of the time, so that
its pass rates over 16 samples spread across the five difficulty levels (paper §2.3), and that
answers in the paper's format (``<think> .. </think> \\boxed{}``) when the prompt carries the
reasoning instruction, so that the RL format reward is reachable.

Recipe (docs/tiny-model.md §4, measured there): a BPE tokenizer trained on the suite's training text,
the Qwen2.5-VL processor, a ~2 M-parameter model whose vision tower and merger stay frozen (random, or
first fit to a code of each cell's content when ``perception_steps`` > 0: synergy/vision_pretrain.py),
AdamW (0.9, 0.98), linear warm-up, cosine decay to 10 %, gradient clipping 1.0, assistant-only
loss on the ``pretrain`` set's short answers. A curriculum trains the colour-conditioned templates
alone first: colour conditioning is a phase transition that mixed training often never reaches.
Training stops short of mastery on purpose: partial skill is what spreads the levels.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from synergy.config import PretrainConfig, TinyModelSettings
from synergy.models import count_parameters, freeze_vision, save_model
from synergy.progress import Progress
from synergy.prompts import REASONING_INSTRUCTION, build_prompt, format_question
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer
from synergy.train.sft import collate_sft, sft_loss
from synergy.vision_pretrain import perception_pretrain

log = logging.getLogger("synergy.pretrain")


def tokenizer_corpus(rows: Sequence[Mapping]) -> list[str]:
    """Every text the model will read or write in the study: questions, options and responses."""
    corpus = [REASONING_INSTRUCTION, "The answer is", "Wait, let me check."]
    for r in rows:
        corpus.append(format_question(r))
        if r.get("response"):
            corpus.append(r["response"])
    return corpus


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to 10 % of it at the last step."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _batches(rows: Sequence[Mapping], cfg: PretrainConfig):
    """Yield (step, rows) with curriculum rows first; each pool is reshuffled every pass."""
    rng = random.Random(cfg.seed)
    curriculum = [r for r in rows if json.loads(r["meta"]).get("template") in set(cfg.curriculum_templates)]
    if cfg.curriculum_steps and not curriculum:
        raise ValueError(f"no pretraining rows match curriculum_templates {list(cfg.curriculum_templates)}")
    pools = {"curriculum": list(curriculum), "mixed": list(rows)}
    cursors = {k: len(v) for k, v in pools.items()}  # start exhausted -> shuffle on first use
    for step in range(cfg.steps):
        name = "curriculum" if step < cfg.curriculum_steps else "mixed"
        pool = pools[name]
        if cursors[name] + cfg.batch_size > len(pool):
            rng.shuffle(pool)
            cursors[name] = 0
        yield step, pool[cursors[name]: cursors[name] + cfg.batch_size]
        cursors[name] += cfg.batch_size


def pretrain_tiny_model(rows: Sequence[Mapping], corpus_rows: Sequence[Mapping], out_dir: str | Path, *,
                        tiny: TinyModelSettings, cfg: PretrainConfig, image_size: int, image_position: str) -> dict:
    """Build tokenizer + processor + tiny model, pretrain on ``rows`` (short answers), save to ``out_dir``."""
    if len(rows) < cfg.batch_size:
        raise ValueError(f"pretraining set has {len(rows)} rows, fewer than batch_size={cfg.batch_size}")
    t0 = time.monotonic()
    tokenizer = train_tokenizer(tokenizer_corpus(corpus_rows), tiny.vocab_size)
    processor = build_processor(tokenizer, image_size)
    model = build_tiny_model(TinyModelConfig(**tiny.to_dict(), image_size=image_size), tokenizer)
    perception = {}
    if cfg.perception_steps:
        perception = perception_pretrain(model, processor, steps=cfg.perception_steps, batch_size=cfg.perception_batch_size,
                                         learning_rate=cfg.perception_learning_rate, seed=cfg.seed, image_size=image_size,
                                         position=cfg.perception_position)
    frozen = freeze_vision(model)
    t_lm = time.monotonic()
    log.info("tokenizer: %d tokens; model: %s; frozen vision params: %d", len(tokenizer), count_parameters(model), frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    model.train()
    torch.manual_seed(cfg.seed)
    losses: list[float] = []
    bar = Progress(cfg.steps, "pretrain", "steps", logger=log)
    for step, batch_rows in _batches(rows, cfg):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        prompts = [build_prompt(r, bool(json.loads(r["meta"]).get("reasoning")), image_position) for r in batch_rows]
        batch = collate_sft(processor, prompts, [r["response"] for r in batch_rows])
        loss, _ = sft_loss(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step}; nothing was saved")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        bar.update(step + 1, f"loss {loss.item():.4f}")
        if step % 50 == 0 or step == cfg.steps - 1:
            recent = losses[-50:]
            log.info("step %d/%d loss %.4f lr %.2e (%.2f s/step)", step + 1, cfg.steps, sum(recent) / len(recent),
                     lr_at(step, cfg), (time.monotonic() - t_lm) / (step + 1))
    model.eval()
    save_model(model, processor, out_dir)
    stats = {"steps": cfg.steps, "final_loss": sum(losses[-50:]) / len(losses[-50:]), "seconds": time.monotonic() - t0,
             "vocab": len(tokenizer), **perception, **count_parameters(model)}
    log.info("pretraining done: %s", stats)
    return stats
