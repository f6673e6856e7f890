"""The one training core shared by SFT, GRPO and the hybrids.

Built on accelerate: one process on CPU (fp32), N processes on GPUs (bf16; DeepSpeed ZeRO when a
stage is configured, launched with ``accelerate launch``). It owns what every trainer needs and
nothing algorithm-specific:

1. optimiser (AdamW) and learning-rate schedule (linear warm-up, then cosine or constant);
2. full training state saved every N steps and at the end (``accelerator.save_state``: weights,
   optimiser, scheduler, RNG) plus a JSON of the trainer's own counters and the checksums of every
   file, written to a temporary folder and renamed, so a killed job never leaves a state that looks
   complete; a full disk stops with ``DiskFull`` naming the folder and the space needed
   (``synergy.train.checkpoint``);
3. resume: a rerun of a killed rule restores the newest undamaged state (checked against its
   checksums) whose fingerprint (a hash of the run's resolved settings) matches, and starts over
   otherwise (stale states are never mixed in);
4. the per-step metrics table (``results/<study>/train_logs/{arm}.parquet``), kept inside the state so a
   resumed run continues the same table;
5. a divergence guard: a NaN or infinite loss stops the run with a clear error, and the last good
   state stays on disk;
6. an out-of-memory guard (``explain_oom``): ``torch.OutOfMemoryError`` / ``MemoryError`` inside a
   step is re-raised as ``TrainingOutOfMemory`` naming the arm, the batch sizes and the state a
   rerun resumes from (Snakemake's retries give the job more memory; ``micro_batch_size`` is
   memory-only and left out of the resume fingerprint, so lowering it keeps the saved state);
7. a grading-storm guard (``check_grading``): when more than ``max_failure_share`` of a step's
   rollouts could not be graded (grader timeout or error), training stops with a clear message
   instead of learning from rewards that are mostly "wrong by timeout".

No pickle is ever loaded from a training state: weights are safetensors, the optimiser and RNG
states go through accelerate's ``load`` (``torch.load(weights_only=True)``), and the learning-rate
schedule is kept as JSON in the state (``scheduler.json``) instead of accelerate's custom-object
checkpoint, which accelerate reloads with ``weights_only=False``. Pass the schedule to
``Checkpointer(scheduler=...)``; never ``accelerator.register_for_checkpointing`` it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from synergy.config import _Section
from synergy.io import write_parquet
# Checkpointer and latest_state are re-exported: the trainers import them from here
from synergy.train.checkpoint import SCHEDULER_FILE, Checkpointer, _json_default, latest_state  # noqa: F401

log = logging.getLogger("synergy.train")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good state."""


class TrainingOutOfMemory(MemoryError):
    """A training step ran out of (GPU or host) memory; the message names the arm, batch sizes and resume state."""


class GradingStorm(RuntimeError):
    """Too many of a step's rollouts could not be graded (timeouts or errors); training stopped."""


MEMORY_ONLY_KEYS = ("micro_batch_size", "gradient_checkpointing")
"""Settings that change memory use but not the result: left out of the resume fingerprint."""


@dataclass(frozen=True)
class OptimSettings(_Section):
    """AdamW and its schedule (paper §2.1 SFT: lr 1e-5; §2.2 RL: lr 1e-6; scheduler unstated)."""

    learning_rate: float
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_ratio: float = 0.0
    schedule: str = "cosine"  # cosine (to min_lr_ratio) or constant, after warm-up
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0


def lr_factor(step: int, total_steps: int, cfg: OptimSettings) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    warmup = int(round(cfg.warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected cosine or constant")
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_accelerator(grad_accum: int = 1, deepspeed_stage: int | None = None, seed: int = 0,
                      max_grad_norm: float | None = None):
    """An Accelerator: fp32 on CPU, bf16 on CUDA, DeepSpeed ZeRO ``deepspeed_stage`` when given.

    DeepSpeed runs on GPUs, and on CPU when the processes were started by a launcher (torchrun /
    ``accelerate launch``, i.e. ``LOCAL_RANK`` is set: tests of the multi-process path, gloo);
    a single CPU process without a launcher trains without DeepSpeed.

    Schedulers are stepped by the trainers once per optimiser step (``step_scheduler_with_optimizer``
    is off): hand them to ``Checkpointer(scheduler=...)`` instead of ``prepare`` (saved as JSON, never pickled).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    kwargs: dict[str, Any] = {"gradient_accumulation_steps": grad_accum, "step_scheduler_with_optimizer": False}
    on_gpu = torch.cuda.is_available()
    launched = int(os.environ.get("LOCAL_RANK", "-1")) != -1
    use_deepspeed = deepspeed_stage is not None and (on_gpu or launched)
    kwargs["mixed_precision"] = "bf16" if on_gpu else "no"
    if use_deepspeed:
        from accelerate.utils import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(zero_stage=deepspeed_stage, gradient_accumulation_steps=grad_accum,
                                                     gradient_clipping=max_grad_norm)
        if not on_gpu:
            # accelerate has no CPU + DeepSpeed mode (cpu=True switches DeepSpeed off); naming the gloo backend
            # makes it start the process group through deepspeed.comm and count the processes
            from accelerate.utils import InitProcessGroupKwargs

            kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    elif deepspeed_stage is not None:
        log.warning("deepspeed_stage %s ignored: one CPU process without a launcher trains without DeepSpeed",
                    deepspeed_stage)
    accelerator = Accelerator(cpu=not on_gpu and not use_deepspeed, **kwargs)
    set_seed(seed)
    return accelerator


def build_optimizer(model: torch.nn.Module, cfg: OptimSettings, total_steps: int):
    """AdamW over the trainable parameters and its LambdaLR schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg))
    return opt, sched


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of a run's resolved settings; a saved state resumes only a run with the same one."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resume_settings(settings: Mapping[str, Any]) -> dict:
    """``settings`` without the memory-only keys (``MEMORY_ONLY_KEYS``), for the resume fingerprint."""
    return {k: v for k, v in settings.items() if k not in MEMORY_ONLY_KEYS}


class MetricsLog:
    """Per-step metrics; travels inside the training state so a resumed run continues the table."""

    def __init__(self, path: str | Path, rows: Iterable[Mapping[str, Any]] = ()):
        self.path = Path(path)
        self.rows: list[dict] = [dict(r) for r in rows]

    def append(self, row: Mapping[str, Any]) -> None:
        clean = {k: _json_default(v) if isinstance(v, torch.Tensor) else v for k, v in row.items()}
        self.rows.append(clean)
        log.info("step %s: %s", clean.get("step"), ", ".join(f"{k}={_fmt(v)}" for k, v in clean.items() if k != "step"))

    def write(self, path: str | Path | None = None) -> None:
        """Write the table (atomically) to ``path``, default the log path given at construction."""
        if self.rows:
            write_parquet(pl.DataFrame(self.rows, infer_schema_length=None).to_arrow(), path or self.path)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def check_finite(loss: torch.Tensor, step: int, checkpointer: Checkpointer | None) -> None:
    """Stop with TrainingDiverged if ``loss`` is NaN or infinite, naming the last good state."""
    if torch.isfinite(loss).all():
        return
    last = checkpointer.latest() if checkpointer else None
    where = f"the last good state is {last[0]} (step {last[1]['step']})" if last else "no state was saved yet"
    raise TrainingDiverged(f"loss became {loss.item()} at step {step}; training stopped, {where}. "
                           "A rerun with the same settings resumes from it (a transient fault); with other settings "
                           "(e.g. a lower learning rate) the arm starts over.")


def trainable_state_changed(before: Mapping[str, torch.Tensor], model: torch.nn.Module) -> bool:
    """True if any trainable parameter differs from the ``before`` snapshot (tests, sanity checks)."""
    return any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters() if n in before)


def _resume_hint(state_dir: str | Path | None) -> str:
    last = latest_state(state_dir) if state_dir is not None else None
    if last:
        return f"a rerun resumes from {last[0]} (step {last[1]})"
    where = f" in {state_dir}" if state_dir is not None else ""
    return f"no training state was saved yet{where}: a rerun starts from step 0"


@contextlib.contextmanager
def explain_oom(arm: str, sizes: Mapping[str, Any], state_dir: str | Path | None) -> Iterator[None]:
    """Re-raise an out-of-memory error inside the block as ``TrainingOutOfMemory`` with a useful message.

    The message names the arm, the batch sizes in ``sizes`` (e.g. ``{"batch_size": 32,
    "micro_batch_size": 8}``) and the saved state under ``state_dir`` that a rerun resumes from.
    """
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if isinstance(exc, TrainingOutOfMemory):
            raise
        device = "GPU" if isinstance(exc, torch.OutOfMemoryError) else "host"
        sizes_text = ", ".join(f"{k}={v}" for k, v in sizes.items())
        text = str(exc).strip()
        detail = f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__
        raise TrainingOutOfMemory(
            f"arm {arm!r} ran out of {device} memory ({detail}) with {sizes_text}; {_resume_hint(state_dir)}. "
            "Rerun with more memory (Snakemake's --retries re-submit the job with mem_mb scaled by the attempt) "
            "or lower micro_batch_size (it changes memory use only, not the result, and keeps the saved state "
            "resumable)."
        ) from exc


def check_grading(arm: str, step: int, failures: Mapping[str, int], total: int, max_failure_share: float,
                  state_dir: str | Path | None) -> None:
    """Stop with ``GradingStorm`` when more than ``max_failure_share`` of a step's ``total`` rollouts failed grading.

    ``failures`` counts them by kind (``{"timeouts": n, "errors": m}``). Below the share the failed
    items stay graded as wrong (as in evaluation), are counted in the step's metrics and logged.
    """
    failed = sum(failures.values())
    if not failed:
        return
    share = failed / max(total, 1)
    detail = ", ".join(f"{v} {k}" for k, v in failures.items() if v)
    if share > max_failure_share:
        raise GradingStorm(
            f"arm {arm!r}, step {step}: {failed} of {total} rollouts could not be graded ({detail}; "
            f"share {share:.2f} > grading.max_failure_share {max_failure_share}); training stopped before the "
            f"update; {_resume_hint(state_dir)}. Raise grading.timeout_s or check the machine's load (each "
            "timeout restarts the grader's worker process)."
        )
    log.warning("arm %r, step %d: %d of %d rollouts could not be graded (%s); they count as wrong", arm, step,
                failed, total, detail)
