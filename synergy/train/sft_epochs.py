"""What long-CoT SFT does around its steps (paper §2.1): sums over processes, epoch models, the best epoch.

Each epoch's model is an HF folder ``state_dir/epoch-{k}`` (1-based; ZeRO-3 parameters are gathered to
save it); the chosen epoch (lowest validation loss, or the last) is copied to ``out_dir`` through a
sibling temporary folder and a rename, with ``training_summary.json`` inside, so the folder never
appears half-written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from synergy.io import share_tree
from synergy.models import save_model
from synergy.train.core import Checkpointer, TrainingDiverged

log = logging.getLogger("synergy.train")

SUMMARY_NAME = "training_summary.json"


def global_sum(accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum").item())


def is_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def set_sync(accelerator, sync: bool) -> None:
    # accelerate reads this flag in backward (DeepSpeed accumulation boundary) and optimizer.step
    accelerator.gradient_state._set_sync_gradients(sync)


def save_epoch_model(accelerator, model, processor, path: Path) -> None:
    unwrapped = accelerator.unwrap_model(model)
    ctx = contextlib.nullcontext()
    if is_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(list(unwrapped.parameters()), modifier_rank=None)
    with ctx:
        if accelerator.is_main_process:
            save_model(unwrapped, processor, path)
    accelerator.wait_for_everyone()


KEPT_EPOCHS = "epochs"
"""Sub-folder of an SFT model folder holding the kept epoch models (``keep_epochs``): ``epochs/epoch-<k>``."""


def kept_epoch_dir(model_dir: str | Path, epoch: int) -> Path:
    """Where an SFT arm's kept epoch ``epoch`` lives inside its model folder (an arm's ``init_epoch``)."""
    path = Path(model_dir) / KEPT_EPOCHS / f"epoch-{int(epoch)}"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} keeps no epoch-{epoch} model ({path} is missing): list the epoch in "
                                "the SFT arm's settings.keep_epochs and retrain it")
    return path


def publish(epoch_dir: Path, out_dir: Path, summary: Mapping[str, Any], keep: Mapping[int, Path] | None = None) -> None:
    """Copy ``epoch_dir`` plus the summary (and the ``keep`` epoch folders under ``epochs/``) to ``out_dir``
    atomically (sibling temp folder, rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{token}"
    old = out_dir.parent / f".{out_dir.name}.old-{token}"
    try:
        shutil.copytree(epoch_dir, tmp)
        for k, path in sorted((keep or {}).items()):
            shutil.copytree(path, tmp / KEPT_EPOCHS / f"epoch-{k}")
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        share_tree(tmp)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def choose_epoch(val_losses: list[float | None], select: str) -> tuple[int, str]:
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


def diverged(what: str, value: float, step: int, checkpointer: Checkpointer) -> TrainingDiverged:
    last = checkpointer.latest()
    where = f"the last good state is {last[0]} (step {last[1]['step']})" if last else "no state was saved yet"
    return TrainingDiverged(f"{what} became {value} at step {step}; training stopped, {where}. "
                            "A rerun with the same settings resumes from it (a transient fault); with other settings "
                            "(e.g. a lower learning rate) the arm starts over.")
