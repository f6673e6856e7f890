"""What the steps of one GRPO run share (``Run``) and how it is set up: accelerator, policy, optimiser, reference.

Precision: the policy keeps float32 master weights (bf16 autocast on GPU; a bf16 AdamW cannot
represent 1e-6 updates); the reference model is a float32 copy run the same way. The final model is
saved in the init checkpoint's dtype (``checkpoint_dtype``). Several processes (accelerate): every
process samples, scores and trains its share of each mini-batch's prompts; the token normaliser and
the metrics are summed over processes (``Run.allsum``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synergy.config import GRPOSettings
from synergy.models import freeze_vision, load_model
from synergy.train.core import (
    Checkpointer,
    OptimSettings,
    build_accelerator,
    build_optimizer,
    fingerprint,
    resume_settings,
)
from synergy.train.zero import set_batch_sizes, wrap_reference, zero_stage
from synergy.train.grpo.sampling import stop_ids, vision_token_ids

log = logging.getLogger("synergy.train")


@dataclass
class Run:
    """What the steps of one run share."""

    cfg: GRPOSettings
    accelerator: Any
    model: Any  # as prepared by accelerate (the module itself on one process); used for the updates
    policy: Any  # the unwrapped module: generation, no-grad passes, saving
    ref: Any  # frozen reference model, or None when kl_coef == 0
    opt: Any
    sched: Any
    checkpointer: Checkpointer
    updates: list[list[tuple[int, int]]]  # per update: its micro-batches' sequence ranges in the step batch
    use_deepspeed: bool

    def allsum(self, values: Sequence[float]) -> list[float]:
        """Sum over processes (identity on one process)."""
        if self.accelerator.num_processes == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()


def checkpoint_dtype(path) -> torch.dtype:
    """The dtype a checkpoint folder was saved in (config.json), float32 when unknown."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return torch.float32
    for source in (cfg, cfg.get("text_config") or {}):
        name = source.get("dtype") or source.get("torch_dtype")
        if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    return torch.float32


def _check_settings(cfg: GRPOSettings, rows: list) -> None:
    P = cfg.prompts_per_step
    if not rows:
        raise ValueError("train_grpo: no training rows")
    if len(rows) < P:
        raise ValueError(f"train_grpo: {len(rows)} training rows, fewer than prompts_per_step={P}")
    if cfg.kl_coef < 0 or not cfg.temperature > 0:
        raise ValueError(f"grpo needs kl_coef >= 0 and temperature > 0, got {cfg.kl_coef} and {cfg.temperature}")
    if min(cfg.micro_batch_size, cfg.save_every_steps, cfg.steps) < 1:
        raise ValueError("grpo steps, micro_batch_size and save_every_steps must be >= 1")


def setup_run(init_dir, rows: list, cfg: GRPOSettings, *, state_dir, seed: int, ref_dir, image_position: str,
              max_pixels: int | None = None):
    """Accelerator, policy (+ frozen vision), optimiser, schedule, reference, checkpointer; restores a state.

    Returns ``(run, processor, restored state or None)``. A step is ``prompts_per_step //
    mini_batch_size`` updates (paper 128 / 64 = 2), each over its mini-batch's sequences in
    micro-batches of ``micro_batch_size``.
    """
    _check_settings(cfg, rows)
    P, G = cfg.prompts_per_step, cfg.num_generations
    updates_per_step = P // cfg.mini_batch_size
    micro_per_update = -(-cfg.mini_batch_size * G // cfg.micro_batch_size)  # DeepSpeed's accumulation steps
    accelerator = build_accelerator(grad_accum=micro_per_update if cfg.deepspeed_stage is not None else 1,
                                    deepspeed_stage=cfg.deepspeed_stage, seed=seed, max_grad_norm=cfg.max_grad_norm)
    world = accelerator.num_processes
    if cfg.mini_batch_size % world:
        raise ValueError(f"grpo mini_batch_size {cfg.mini_batch_size} is not a multiple of the {world} processes")
    seqs = cfg.mini_batch_size // world * G  # sequences of one update on this process
    micro = [(a, min(a + cfg.micro_batch_size, seqs)) for a in range(0, seqs, cfg.micro_batch_size)]
    updates = [[(m * seqs + a, m * seqs + b) for a, b in micro] for m in range(updates_per_step)]
    use_ds = zero_stage(accelerator) is not None
    if use_ds and (cfg.mini_batch_size // world * G) % cfg.micro_batch_size:
        raise ValueError("with DeepSpeed, micro_batch_size must divide mini_batch_size * num_generations per process")
    # DeepSpeed counts micro-steps: the config must know the micro-batch and how many make one update
    set_batch_sizes(accelerator, cfg.micro_batch_size, micro_per_update)

    model, processor = load_model(init_dir, device="cpu", dtype=torch.float32, max_pixels=max_pixels)
    if cfg.freeze_vision:
        freeze_vision(model)
    if cfg.gradient_checkpointing:  # recompute activations in backward (long rollouts beside a vLLM engine)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optim = OptimSettings(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                          schedule=cfg.schedule, max_grad_norm=cfg.max_grad_norm)
    opt, sched = build_optimizer(model, optim, cfg.steps * updates_per_step)
    prepared, opt = accelerator.prepare(model, opt)  # sched is stepped by hand (a prepared one steps per process)
    if use_ds:
        log.info("DeepSpeed ZeRO stage %d: train_micro_batch_size_per_gpu=%d, gradient_accumulation_steps=%d, "
                 "gradient_clipping=%s, gradient_checkpointing=%s", zero_stage(accelerator),
                 prepared.train_micro_batch_size_per_gpu(), prepared.gradient_accumulation_steps(),
                 prepared.gradient_clipping(), cfg.gradient_checkpointing)

    ref = None
    ref_source = Path(ref_dir) if ref_dir is not None else Path(init_dir)
    if cfg.kl_coef > 0:
        # under ZeRO-3 its weights load as partitions: an inference engine gathers them (synergy.train.zero)
        ref = wrap_reference(load_model(ref_source, device="cpu", dtype=torch.float32)[0], accelerator)
        log.info("reference model loaded from %s (kl_coef=%g)", ref_source, cfg.kl_coef)
    else:
        log.info("no reference model: kl_coef=0 (kl is logged as NaN)")

    run_fp = fingerprint({
        "kind": "grpo", "settings": resume_settings(cfg.to_dict()), "init_dir": str(Path(init_dir).resolve()),
        "ref_dir": str(ref_source.resolve()) if ref is not None else None, "num_rows": len(rows),
        "row_ids": hashlib.sha256("\n".join(str(r.get("id")) for r in rows).encode()).hexdigest()[:16],
        "seed": seed, "image_position": image_position,
        **({"max_pixels": max_pixels} if max_pixels is not None else {}),
    })
    run = Run(cfg=cfg, accelerator=accelerator, model=prepared, policy=accelerator.unwrap_model(prepared), ref=ref,
              opt=opt, sched=sched, checkpointer=Checkpointer(accelerator, state_dir, run_fp, scheduler=sched),
              updates=updates, use_deepspeed=use_ds)
    return run, processor, run.checkpointer.restore()


def rollout_engine(run: Run, processor, init_dir, vllm_cfg):
    """The vLLM rollout engine of ``grpo.rollout_backend: vllm`` (synergy/generate/vllm.py), colocated with this process.

    It holds ``init_dir``'s weights until the trainer pushes its own (``load_weights``, after every step).
    """
    from synergy.generate.vllm import RolloutEngine

    acc = run.accelerator
    return RolloutEngine(init_dir, vllm_cfg, processor,
                         stop_ids=stop_ids(run.policy, processor), suppress_ids=vision_token_ids(run.policy),
                         process_index=acc.process_index, local_process_index=acc.local_process_index,
                         num_processes=acc.num_processes)
