"""Long-CoT supervised fine-tuning of one arm (paper §2.1; docs/paper.md §3, docs/ecosystem.md §5).

The paper fine-tunes Qwen2.5-VL-7B-Instruct with LLaMA-Factory: full fine-tuning of the language
model with the ViT and the MLP connector frozen, learning rate 1e-5, batch 32, 15 epochs on s1 /
s1.1 and 5 on Eureka-Distill, a checkpoint after every epoch, and the best checkpoint reported.
``train_sft`` does the same with every number taken from ``SFTSettings`` (``sft:`` in the study
config, overridden per arm), on the one training core (``synergy.train.core``): AdamW with linear
warm-up and a cosine (or constant) schedule, gradient clipping, assistant-only labels
(``synergy.train.sft.collate_sft``: the response tokens and the closing ``<|im_end|>``), the full
training state saved every ``save_every_steps`` optimiser steps and at every epoch end, resume of a
killed run at the right batch of the right epoch, a per-step metrics table, and a NaN guard.

Outputs: ``out_dir`` (a Hugging Face model folder, the chosen epoch, with ``training_summary.json``),
the train log at ``log_path`` (parquet: ``step, epoch, loss, lr, grad_norm, tokens, seconds,
val_loss``; one row per optimiser step, ``val_loss`` null, plus one row per epoch end with only
``step, epoch, val_loss`` set), written only together with ``out_dir`` (while training runs the
table so far is ``state_dir/train_log.parquet``). ``state_dir`` holds the step states and the
per-epoch model folders while training runs and is deleted once ``out_dir`` is written.

Deviations and choices (the paper and LLaMA-Factory are silent or differ):

1. **Best epoch** = lowest validation loss (token-weighted NLL, no grad) on a held-out split of the
   *training* set (``val_fraction``, split by a hash of row id and seed, at least one row), not on
   the benchmarks: the paper reports "the best checkpoint" without saying how it was chosen, and
   choosing on the evaluation benchmarks would select on test data. ``select: last`` takes the last
   epoch; with ``val_fraction: 0`` (or fewer than two rows) ``best_val_loss`` falls back to the
   last epoch with a warning. The held-out rows are not trained on.
2. **Loss normalisation**: the loss of an optimiser step is the token mean over *all* label tokens
   of the whole batch: each micro-batch contributes its summed NLL divided by the batch's total
   label tokens (counted before the first backward, summed over processes), so gradient
   accumulation does not re-weight short and long sequences (transformers' ``num_items_in_batch``;
   a mean of micro-batch means would).
3. **Batches**: each epoch's order is a shuffle seeded by ``(seed, epoch)`` alone (never the
   global RNG), so a resumed run sees the same order; steps per epoch = ceil(train rows /
   ``batch_size``): the last, smaller batch of an epoch is kept (HF Trainer's ``drop_last=False``),
   and its loss is still the token mean over its own label tokens.
4. **No truncation, no packing**: a sequence longer than ``max_length`` raises ``DataError``
   naming the row (truncation could cut image tokens; LLaMA-Factory truncates at ``cutoff_len``).
   A leading newline of a response is stripped (it would merge with the prompt's last token).
5. **Precision**: master weights and optimiser in float32; bf16 autocast on GPUs (accelerate mixed
   precision), fp32 on CPU. On CUDA gradient checkpointing is switched on (LLaMA-Factory's default;
   numerically identical), on CPU it is off.
6. **Scheduler**: the LambdaLR of ``core.build_optimizer`` is stepped once per optimiser step and
   saved as JSON in each state by the ``Checkpointer`` instead of passing through
   ``accelerator.prepare``, which would step it once per process per call on several GPUs (and
   accelerate reloads registered custom objects with pickle).
   ``warmup_ratio: 0.1`` and cosine follow LLaMA-Factory's Qwen2.5-VL example (paper silent).
7. **Checkpoints**: the step states (weights, optimiser, scheduler, RNG, the trainer's counters and
   metrics rows and per-epoch validation losses) rotate under ``state_dir/step-*``; each epoch's
   model is an HF folder ``state_dir/epoch-{k}`` (1-based). Only the chosen epoch survives (copied
   to ``out_dir`` through a sibling temporary folder and a rename), with the epochs listed in
   ``keep_epochs`` under ``out_dir/epochs/epoch-{k}`` (another arm's ``init_epoch``, e.g. two-stage
   from epoch 4, paper §3.1); then ``state_dir`` is deleted,
   so nothing big stays behind. The per-epoch validation losses stay in the summary and the log.
8. **Stale states**: a start that finds no state with this run's fingerprint (settings, resolved
   ``init_dir``, the rows' count and ids, seed, image position) deletes whatever ``state_dir``
   holds, so states of other settings are never resumed or mixed in.
9. **Several processes** (tests/test_distributed.py: 2 processes, ZeRO-3 over gloo): rank r takes rows ``r::N`` of each batch; every
   rank runs the same number of micro-batches (a rank short of rows runs a zero-weight repeat) so
   DDP / ZeRO collectives match. Under DeepSpeed the optimiser step and gradient clipping happen
   inside the engine (clipping must be set in its config) and the pre-step gradient-norm guard
   does not apply; ZeRO-3 parameters are gathered to save the epoch models.
10. ``max_examples`` keeps the first N rows in the given order (LLaMA-Factory's ``max_samples``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from synergy.config import SFTSettings
from synergy.data.schema import DataError
from synergy.models import count_parameters, freeze_vision, load_model
from synergy.train.core import (
    Checkpointer,
    MetricsLog,
    OptimSettings,
    build_accelerator,
    build_optimizer,
    check_finite,
    explain_oom,
    fingerprint,
    resume_settings,
)
from synergy.train.sft import sft_loss
from synergy.train.sft_batches import (
    check_rows,
    collate,
    epoch_batches,
    label_tokens,
    micro_batches,
    split_train_val,
)
from synergy.train.sft_epochs import (
    SUMMARY_NAME,
    choose_epoch,
    diverged,
    global_sum,
    is_deepspeed,
    publish,
    save_epoch_model,
    set_sync,
)

log = logging.getLogger("synergy.train")

METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "seconds", "val_loss")
PROGRESS_LOG = "train_log.parquet"
"""The metrics so far, under ``state_dir`` while the arm trains (``log_path`` appears only with the model)."""

__all__ = ["METRIC_COLUMNS", "SUMMARY_NAME", "split_train_val", "train_sft"]


# --------------------------------------------------------------------------------------------
# the trainer (sft_loss and _validation_loss are looked up here, so tests can replace them)


def _validation_loss(model, processor, val_rows: Sequence[Mapping], cfg: SFTSettings, image_position: str,
                     accelerator) -> float | None:
    """Token-weighted NLL over ``val_rows`` (no grad); None without validation rows."""
    if not val_rows:
        return None
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for chunk, real in micro_batches(list(val_rows), accelerator, cfg.micro_batch_size):
                mean, n = sft_loss(model, collate(processor, chunk, cfg, image_position))
                if real:
                    nll += float(mean) * n
                    tokens += n
    finally:
        model.train(was_training)
    nll, tokens = global_sum(accelerator, nll), global_sum(accelerator, tokens)
    return nll / tokens if tokens else None


def train_sft(init_dir: str | Path, rows: Sequence[Mapping], out_dir: str | Path, *, log_path: str | Path,
              state_dir: str | Path, cfg: SFTSettings, image_position: str = "after_text", seed: int = 0,
              stop_after_steps: int | None = None, max_pixels: int | None = None) -> dict:
    """Fine-tune the model in ``init_dir`` on the SFT ``rows`` (see ``_train_sft``).

    ``max_pixels`` (study config ``prompt.max_pixels``) caps every training image as evaluation does.

    Out of memory anywhere in the run raises ``TrainingOutOfMemory`` naming the arm (the name of
    ``out_dir``), the batch sizes and the saved state a rerun resumes from.
    """
    sizes = {"batch_size": cfg.batch_size, "micro_batch_size": cfg.micro_batch_size, "max_length": cfg.max_length}
    with explain_oom(Path(out_dir).name, sizes, state_dir):
        return _train_sft(init_dir, rows, out_dir, log_path=log_path, state_dir=state_dir, cfg=cfg,
                          image_position=image_position, seed=seed, stop_after_steps=stop_after_steps,
                          max_pixels=max_pixels)


def _train_sft(init_dir: str | Path, rows: Sequence[Mapping], out_dir: str | Path, *, log_path: str | Path,
               state_dir: str | Path, cfg: SFTSettings, image_position: str = "after_text", seed: int = 0,
               stop_after_steps: int | None = None, max_pixels: int | None = None) -> dict:
    """Fine-tune the model in ``init_dir`` on the SFT ``rows``; write the chosen epoch to ``out_dir``.

    Returns the summary also written to ``out_dir/training_summary.json``: ``chosen_epoch``,
    ``selected_by``, ``val_losses`` (per epoch, 1-based order), ``steps``, ``epochs``,
    ``steps_per_epoch``, ``seconds``, ``rows_total`` / ``rows_used`` / ``val_rows``, ``tokens``,
    ``tokens_per_second``, ``final_epoch_train_loss``, parameter counts and the settings. With
    ``stop_after_steps`` (tests) the run stops right after that optimiser step as if killed (after
    saving if it is a save point) and returns ``{"stopped": True, "step": ...}`` without writing
    ``out_dir``. A NaN or infinite loss raises ``TrainingDiverged``; the last saved state stays.
    """
    t_start = time.monotonic()
    init_dir, out_dir, state_dir = Path(init_dir), Path(out_dir), Path(state_dir)
    rows = list(rows)
    check_rows(rows)
    if cfg.epochs < 1:
        raise ValueError(f"sft epochs must be >= 1, got {cfg.epochs}")
    if cfg.save_every_steps < 1:
        raise ValueError(f"sft save_every_steps must be >= 1, got {cfg.save_every_steps}")
    used = rows[: cfg.max_examples] if cfg.max_examples is not None else rows
    train_rows, val_rows = split_train_val(used, cfg.val_fraction, seed)
    log.info("SFT rows: %d given, %d used, %d train, %d validation", len(rows), len(used), len(train_rows), len(val_rows))

    # micro-batches per optimiser step on each process (rank r takes rows r::N of every batch)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    grad_accum = math.ceil(math.ceil(cfg.batch_size / world) / cfg.micro_batch_size)
    accelerator = build_accelerator(grad_accum=grad_accum, deepspeed_stage=cfg.deepspeed_stage, seed=seed,
                                    max_grad_norm=cfg.max_grad_norm)
    model, processor = load_model(init_dir, device="cpu", dtype=torch.float32,  # prepare() moves it
                                  max_pixels=max_pixels)
    frozen = freeze_vision(model) if cfg.freeze_vision else 0
    counts = count_parameters(model)
    log.info("parameters: %d total, %d trainable, %d frozen vision (freeze_vision=%s)", counts["total"],
             counts["trainable"], frozen, cfg.freeze_vision)
    if torch.cuda.is_available():
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()

    steps_per_epoch = len(epoch_batches(len(train_rows), cfg.batch_size, seed, 0))
    total_steps = steps_per_epoch * cfg.epochs
    optim = OptimSettings(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                          schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio, max_grad_norm=cfg.max_grad_norm)
    opt, sched = build_optimizer(model, optim, total_steps)
    if is_deepspeed(accelerator):
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
        ds_config["train_batch_size"] = cfg.micro_batch_size * grad_accum * accelerator.num_processes
    model, opt = accelerator.prepare(model, opt)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")

    ids_hash = hashlib.sha256("\n".join(str(r["id"]) for r in rows).encode()).hexdigest()[:16]
    run_fp = fingerprint({"sft": resume_settings(cfg.to_dict()), "init_dir": str(init_dir.resolve()), "num_rows": len(rows),
                          "row_ids": ids_hash, "seed": seed, "image_position": image_position,
                          **({"max_pixels": max_pixels} if max_pixels is not None else {})})
    checkpointer = Checkpointer(accelerator, state_dir, run_fp, scheduler=sched)
    state = checkpointer.restore()
    if state is None:
        if state_dir.exists() and any(state_dir.iterdir()):
            log.warning("no training state of this run in %s: deleting its contents and starting over", state_dir)
            checkpointer.clear()
        accelerator.wait_for_everyone()
        state = {"step": 0, "epoch": 0, "batch": 0, "metrics": [], "val_losses": [], "seconds": 0.0, "tokens": 0}
    step, start_epoch, start_batch = int(state["step"]), int(state["epoch"]), int(state["batch"])
    val_losses: list[float | None] = list(state["val_losses"])
    total_tokens = int(state["tokens"])
    seconds_before = float(state["seconds"])
    metrics = MetricsLog(log_path, state["metrics"])
    progress_log = state_dir / PROGRESS_LOG  # the declared log_path is written once, when the model is
    log.info("SFT: %d epochs x %d steps = %d optimiser steps of %d sequences (micro-batches of %d), %s",
             cfg.epochs, steps_per_epoch, total_steps, cfg.batch_size, cfg.micro_batch_size,
             f"resuming at step {step}" if step else "from the start")

    def trainer_state(epoch: int, batch: int) -> dict:
        return {"step": step, "epoch": epoch, "batch": batch, "metrics": metrics.rows, "val_losses": val_losses,
                "seconds": seconds_before + time.monotonic() - t_start, "tokens": total_tokens}

    for epoch in range(start_epoch, cfg.epochs):
        batches = epoch_batches(len(train_rows), cfg.batch_size, seed, epoch)
        for b in range(start_batch if epoch == start_epoch else 0, len(batches)):
            t0 = time.monotonic()
            batch_rows = [train_rows[i] for i in batches[b]]
            micro = [(collate(processor, chunk, cfg, image_position), real)
                     for chunk, real in micro_batches(batch_rows, accelerator, cfg.micro_batch_size)]
            tokens = int(global_sum(accelerator, sum(label_tokens(mb) for mb, real in micro if real)))
            if tokens == 0:
                raise DataError(f"optimiser step {step + 1} has no label tokens (rows {[r['id'] for r in batch_rows]})")
            # accelerate (and DeepSpeed) divide by grad_accum, DDP averages over processes: undo both
            scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / tokens
            lr = sched.get_last_lr()[0]
            nll_sum = 0.0
            try:
                for k, (mb, real) in enumerate(micro):
                    last = k == len(micro) - 1
                    set_sync(accelerator, last)
                    ctx = contextlib.nullcontext() if last or is_deepspeed(accelerator) else accelerator.no_sync(model)
                    with ctx:
                        mean, n = sft_loss(model, mb)
                        check_finite(mean.detach(), step + 1, checkpointer)
                        accelerator.backward(mean * (n * scale * (1.0 if real else 0.0)))
                    if real:
                        nll_sum += float(mean.detach()) * n
            finally:
                set_sync(accelerator, True)
            grad_norm = accelerator.clip_grad_norm_(params, max_norm)
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
            if not is_deepspeed(accelerator) and not math.isfinite(grad_norm):
                raise diverged("the gradient norm", grad_norm, step + 1, checkpointer)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            total_tokens += tokens
            loss = global_sum(accelerator, nll_sum) / tokens
            dt = time.monotonic() - t0
            metrics.append({"step": step, "epoch": epoch + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                            "tokens": tokens, "seconds": dt, "val_loss": None})
            log.info("sft step %d/%d (epoch %d/%d): loss %.4f, lr %.3g, %.0f tokens/s", step, total_steps, epoch + 1,
                     cfg.epochs, loss, lr, tokens / dt if dt > 0 else float("inf"))

            epoch_end = b == len(batches) - 1
            if epoch_end:
                val = _validation_loss(model, processor, val_rows, cfg, image_position, accelerator)
                if val is not None and not math.isfinite(val):
                    raise diverged("the validation loss", val, step, checkpointer)
                val_losses.append(val)
                metrics.append({"step": step, "epoch": epoch + 1, "loss": None, "lr": None, "grad_norm": None,
                                "tokens": None, "seconds": None, "val_loss": val})
                if val is not None:
                    log.info("epoch %d/%d: validation loss %.4f", epoch + 1, cfg.epochs, val)
                save_epoch_model(accelerator, model, processor, state_dir / f"epoch-{epoch + 1}")
            if epoch_end or step % cfg.save_every_steps == 0:
                checkpointer.save(trainer_state(epoch + 1, 0) if epoch_end else trainer_state(epoch, b + 1))
                if accelerator.is_main_process:
                    metrics.write(progress_log)
            if stop_after_steps is not None and step >= stop_after_steps:
                log.warning("stopping after step %d (stop_after_steps)", step)
                return {"stopped": True, "step": step}

    chosen, selected_by = choose_epoch(val_losses, cfg.select)
    seconds = seconds_before + time.monotonic() - t_start
    step_rows = [r for r in metrics.rows if r.get("loss") is not None]
    last_epoch_losses = [r["loss"] for r in step_rows if r["epoch"] == cfg.epochs]
    summary = {
        "chosen_epoch": chosen,
        "select": cfg.select,
        "selected_by": selected_by,
        "val_losses": val_losses,
        "epochs": cfg.epochs,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "seconds": seconds,
        "rows_total": len(rows),
        "rows_used": len(train_rows),
        "val_rows": len(val_rows),
        "tokens": total_tokens,
        "tokens_per_second": total_tokens / max(1e-9, sum(r["seconds"] for r in step_rows)),
        "final_epoch_train_loss": sum(last_epoch_losses) / len(last_epoch_losses) if last_epoch_losses else None,
        "parameters": {**counts, "frozen": frozen},
        "init_dir": str(init_dir),
        "seed": seed,
        "image_position": image_position,
        "settings": cfg.to_dict(),
    }
    if accelerator.is_main_process:
        publish(state_dir / f"epoch-{chosen}", out_dir, summary,
                keep={k: state_dir / f"epoch-{k}" for k in cfg.keep_epochs})
        metrics.write()
    accelerator.wait_for_everyone()
    checkpointer.clear()
    log.info("SFT done: epoch %d chosen (%s), val losses %s, %d steps in %.1f s -> %s", chosen, selected_by,
             val_losses, step, seconds, out_dir)
    return summary
