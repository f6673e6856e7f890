"""Long-CoT supervised fine-tuning of one arm (paper §2.1; notes/paper.md §2.2, notes/ecosystem.md §2).

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
   to ``out_dir`` through a sibling temporary folder and a rename); then ``state_dir`` is deleted,
   so nothing big stays behind. The per-epoch validation losses stay in the summary and the log.
8. **Stale states**: a start that finds no state with this run's fingerprint (settings, resolved
   ``init_dir``, the rows' count and ids, seed, image position) deletes whatever ``state_dir``
   holds, so states of other settings are never resumed or mixed in.
9. **Several processes** (untested here, no GPU): rank r takes rows ``r::N`` of each batch; every
   rank runs the same number of micro-batches (a rank short of rows runs a zero-weight repeat) so
   DDP / ZeRO collectives match. Under DeepSpeed the optimiser step and gradient clipping happen
   inside the engine (clipping must be set in its config) and the pre-step gradient-norm guard
   does not apply; ZeRO-3 parameters are gathered to save the epoch models.
10. ``max_examples`` keeps the first N rows in the given order (LLaMA-Factory's ``max_samples``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from synergy.config import SFTSettings
from synergy.data.schema import DataError, validate_rows
from synergy.models import count_parameters, freeze_vision, load_model, save_model
from synergy.prompts import build_prompt
from synergy.train.core import (
    Checkpointer,
    MetricsLog,
    OptimSettings,
    TrainingDiverged,
    build_accelerator,
    build_optimizer,
    check_finite,
    explain_oom,
    fingerprint,
    resume_settings,
)
from synergy.train.sft import IGNORE_INDEX, collate_sft, sft_loss

log = logging.getLogger("synergy.train")

METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "seconds", "val_loss")
SUMMARY_NAME = "training_summary.json"
PROGRESS_LOG = "train_log.parquet"
"""The metrics so far, under ``state_dir`` while the arm trains (``log_path`` appears only with the model)."""

__all__ = ["METRIC_COLUMNS", "SUMMARY_NAME", "split_train_val", "train_sft"]


# --------------------------------------------------------------------------------------------
# data


def _row_rank(row_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x00{row_id}".encode()).hexdigest()


def split_train_val(rows: Sequence[Mapping], val_fraction: float, seed: int) -> tuple[list, list]:
    """Split ``rows`` into (train, validation), deterministically by a hash of row id and ``seed``.

    ``round(val_fraction * n)`` rows (at least 1 when ``val_fraction > 0`` and ``n >= 2``, at most
    ``n - 1``) go to validation: those whose ``sha256(seed, id)`` ranks lowest. The split depends
    only on the ids and the seed, not on the order of ``rows``; both parts keep the input order.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rows = list(rows)
    n = len(rows)
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    ranked = sorted(range(n), key=lambda i: (_row_rank(str(rows[i]["id"]), seed), i))
    val_idx = set(ranked[:n_val])
    train = [r for i, r in enumerate(rows) if i not in val_idx]
    val = [r for i, r in enumerate(rows) if i in val_idx]
    return train, val


def _check_rows(rows: Sequence[Mapping]) -> None:
    validate_rows(rows)
    for row in rows:
        resp = row.get("response")
        if not isinstance(resp, str) or not resp.strip():
            raise DataError(f"row id={row.get('id')!r}: no response; SFT rows need a reference trace")


def _clean_response(text: str) -> str:
    return text.lstrip("\n")


def _collate(processor, rows: Sequence[Mapping], cfg: SFTSettings, image_position: str) -> dict:
    prompts = [build_prompt(r, cfg.reasoning_instruction, image_position) for r in rows]
    responses = [_clean_response(r["response"]) for r in rows]
    try:
        return collate_sft(processor, prompts, responses, max_length=cfg.max_length)
    except ValueError as exc:
        m = re.match(r"row (\d+): (\d+) tokens > max_length", str(exc))
        if m:
            rid = rows[int(m.group(1))]["id"]
            raise DataError(f"row id={rid!r}: {m.group(2)} tokens > sft max_length {cfg.max_length}; sequences are "
                            "never truncated (that could cut image tokens): raise max_length or drop the row") from exc
        raise


def _label_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Label tokens that enter the loss (targets are labels shifted by one, as in ``sft_loss``)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices of each optimiser step of ``epoch`` (0-based): a shuffle seeded by (seed, epoch)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


# --------------------------------------------------------------------------------------------
# helpers on the accelerator


def _global_sum(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum").item())


def _is_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def _set_sync(accelerator, sync: bool) -> None:
    # accelerate reads this flag in backward (DeepSpeed accumulation boundary) and optimizer.step
    accelerator.gradient_state._set_sync_gradients(sync)


def _length_key(row: Mapping) -> int:
    """A row's rough length: characters of question and response, plus a fixed share per image."""
    return len(row.get("question") or "") + len(row.get("response") or "") + 400 * len(row.get("images") or ())


def _micro_batches(rows: list[Mapping], accelerator, micro_batch_size: int) -> list[tuple[list[Mapping], bool]]:
    """This process's micro-batches of one optimiser batch: (rows, real); the same count on every rank.

    The batch's rows are ordered by length first (stable), so each micro-batch holds rows of similar
    length and pads less. The optimiser step is the same: the loss is the sum over the batch's label
    tokens divided by their count, whichever micro-batch a row lands in.
    """
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    mine = sorted(rows, key=_length_key)[rank::n_proc]
    n_micro = math.ceil(math.ceil(len(rows) / n_proc) / micro_batch_size)
    out = []
    for k in range(n_micro):
        chunk = mine[k * micro_batch_size : (k + 1) * micro_batch_size]
        out.append((chunk, True) if chunk else (rows[:1], False))
    return out


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
            for chunk, real in _micro_batches(list(val_rows), accelerator, cfg.micro_batch_size):
                mean, n = sft_loss(model, _collate(processor, chunk, cfg, image_position))
                if real:
                    nll += float(mean) * n
                    tokens += n
    finally:
        model.train(was_training)
    nll, tokens = _global_sum(accelerator, nll), _global_sum(accelerator, tokens)
    return nll / tokens if tokens else None


def _save_epoch_model(accelerator, model, processor, path: Path) -> None:
    unwrapped = accelerator.unwrap_model(model)
    ctx = contextlib.nullcontext()
    if _is_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None)
    with ctx:
        if accelerator.is_main_process:
            save_model(unwrapped, processor, path)
    accelerator.wait_for_everyone()


def _publish(epoch_dir: Path, out_dir: Path, summary: Mapping[str, Any]) -> None:
    """Copy ``epoch_dir`` plus the summary to ``out_dir`` atomically (sibling temp folder, rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{token}"
    old = out_dir.parent / f".{out_dir.name}.old-{token}"
    try:
        shutil.copytree(epoch_dir, tmp)
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _choose_epoch(val_losses: list[float | None], select: str) -> tuple[int, str]:
    """(1-based epoch, how it was chosen)."""
    last = len(val_losses)
    if select == "last":
        return last, "last"
    scored = [(v, k + 1) for k, v in enumerate(val_losses) if v is not None]
    if not scored:
        log.warning("select=best_val_loss but there are no validation rows (val_fraction 0 or too few rows): "
                    "using the last epoch")
        return last, "last (no validation rows)"
    return min(scored)[1], "best_val_loss"


def _diverged(what: str, value: float, step: int, checkpointer: Checkpointer) -> TrainingDiverged:
    last = checkpointer.latest()
    where = f"the last good state is {last[0]} (step {last[1]['step']})" if last else "no state was saved yet"
    return TrainingDiverged(f"{what} became {value} at step {step}; training stopped, {where}. "
                            "A rerun with the same settings resumes from it (a transient fault); with other settings "
                            "(e.g. a lower learning rate) the arm starts over.")


# --------------------------------------------------------------------------------------------
# the trainer


def train_sft(init_dir: str | Path, rows: Sequence[Mapping], out_dir: str | Path, *, log_path: str | Path,
              state_dir: str | Path, cfg: SFTSettings, image_position: str = "after_text", seed: int = 0,
              stop_after_steps: int | None = None) -> dict:
    """Fine-tune the model in ``init_dir`` on the SFT ``rows`` (see ``_train_sft``).

    Out of memory anywhere in the run raises ``TrainingOutOfMemory`` naming the arm (the name of
    ``out_dir``), the batch sizes and the saved state a rerun resumes from.
    """
    sizes = {"batch_size": cfg.batch_size, "micro_batch_size": cfg.micro_batch_size, "max_length": cfg.max_length}
    with explain_oom(Path(out_dir).name, sizes, state_dir):
        return _train_sft(init_dir, rows, out_dir, log_path=log_path, state_dir=state_dir, cfg=cfg,
                          image_position=image_position, seed=seed, stop_after_steps=stop_after_steps)


def _train_sft(init_dir: str | Path, rows: Sequence[Mapping], out_dir: str | Path, *, log_path: str | Path,
               state_dir: str | Path, cfg: SFTSettings, image_position: str = "after_text", seed: int = 0,
               stop_after_steps: int | None = None) -> dict:
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
    _check_rows(rows)
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
    model, processor = load_model(init_dir, device="cpu", dtype=torch.float32)  # prepare() moves it
    frozen = freeze_vision(model) if cfg.freeze_vision else 0
    counts = count_parameters(model)
    log.info("parameters: %d total, %d trainable, %d frozen vision (freeze_vision=%s)", counts["total"],
             counts["trainable"], frozen, cfg.freeze_vision)
    if torch.cuda.is_available():
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()

    steps_per_epoch = len(_epoch_batches(len(train_rows), cfg.batch_size, seed, 0))
    total_steps = steps_per_epoch * cfg.epochs
    optim = OptimSettings(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                          schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio, max_grad_norm=cfg.max_grad_norm)
    opt, sched = build_optimizer(model, optim, total_steps)
    if _is_deepspeed(accelerator):
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
        ds_config["train_batch_size"] = cfg.micro_batch_size * grad_accum * accelerator.num_processes
    model, opt = accelerator.prepare(model, opt)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")

    ids_hash = hashlib.sha256("\n".join(str(r["id"]) for r in rows).encode()).hexdigest()[:16]
    run_fp = fingerprint({"sft": resume_settings(cfg.to_dict()), "init_dir": str(init_dir.resolve()), "num_rows": len(rows),
                          "row_ids": ids_hash, "seed": seed, "image_position": image_position})
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
        batches = _epoch_batches(len(train_rows), cfg.batch_size, seed, epoch)
        for b in range(start_batch if epoch == start_epoch else 0, len(batches)):
            t0 = time.monotonic()
            batch_rows = [train_rows[i] for i in batches[b]]
            micro = [(_collate(processor, chunk, cfg, image_position), real)
                     for chunk, real in _micro_batches(batch_rows, accelerator, cfg.micro_batch_size)]
            tokens = int(_global_sum(accelerator, sum(_label_tokens(mb) for mb, real in micro if real)))
            if tokens == 0:
                raise DataError(f"optimiser step {step + 1} has no label tokens (rows {[r['id'] for r in batch_rows]})")
            # accelerate (and DeepSpeed) divide by grad_accum, DDP averages over processes: undo both
            scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / tokens
            lr = sched.get_last_lr()[0]
            nll_sum = 0.0
            try:
                for k, (mb, real) in enumerate(micro):
                    last = k == len(micro) - 1
                    _set_sync(accelerator, last)
                    ctx = contextlib.nullcontext() if last or _is_deepspeed(accelerator) else accelerator.no_sync(model)
                    with ctx:
                        mean, n = sft_loss(model, mb)
                        check_finite(mean.detach(), step + 1, checkpointer)
                        accelerator.backward(mean * (n * scale * (1.0 if real else 0.0)))
                    if real:
                        nll_sum += float(mean.detach()) * n
            finally:
                _set_sync(accelerator, True)
            grad_norm = accelerator.clip_grad_norm_(params, max_norm)
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
            if not _is_deepspeed(accelerator) and not math.isfinite(grad_norm):
                raise _diverged("the gradient norm", grad_norm, step + 1, checkpointer)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            total_tokens += tokens
            loss = _global_sum(accelerator, nll_sum) / tokens
            dt = time.monotonic() - t0
            metrics.append({"step": step, "epoch": epoch + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                            "tokens": tokens, "seconds": dt, "val_loss": None})
            log.info("sft step %d/%d (epoch %d/%d): loss %.4f, lr %.3g, %.0f tokens/s", step, total_steps, epoch + 1,
                     cfg.epochs, loss, lr, tokens / dt if dt > 0 else float("inf"))

            epoch_end = b == len(batches) - 1
            if epoch_end:
                val = _validation_loss(model, processor, val_rows, cfg, image_position, accelerator)
                if val is not None and not math.isfinite(val):
                    raise _diverged("the validation loss", val, step, checkpointer)
                val_losses.append(val)
                metrics.append({"step": step, "epoch": epoch + 1, "loss": None, "lr": None, "grad_norm": None,
                                "tokens": None, "seconds": None, "val_loss": val})
                if val is not None:
                    log.info("epoch %d/%d: validation loss %.4f", epoch + 1, cfg.epochs, val)
                _save_epoch_model(accelerator, model, processor, state_dir / f"epoch-{epoch + 1}")
            if epoch_end or step % cfg.save_every_steps == 0:
                checkpointer.save(trainer_state(epoch + 1, 0) if epoch_end else trainer_state(epoch, b + 1))
                if accelerator.is_main_process:
                    metrics.write(progress_log)
            if stop_after_steps is not None and step >= stop_after_steps:
                log.warning("stopping after step %d (stop_after_steps)", step)
                return {"stopped": True, "step": step}

    chosen, selected_by = _choose_epoch(val_losses, cfg.select)
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
        _publish(state_dir / f"epoch-{chosen}", out_dir, summary)
        metrics.write()
    accelerator.wait_for_everyone()
    checkpointer.clear()
    log.info("SFT done: epoch %d chosen (%s), val losses %s, %d steps in %.1f s -> %s", chosen, selected_by,
             val_losses, step, seconds, out_dir)
    return summary
