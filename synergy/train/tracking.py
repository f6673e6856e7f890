"""Optional experiment tracking through accelerate's trackers (TensorBoard, Weights & Biases, MLflow).

Off by default: the per-step parquet tables (``results/<study>/train_logs/{arm}.parquet``) stay the record
every table and figure is built from. A study turns tracking on with ``tracking: {backends: [tensorboard]}``
(``wandb``, ``mlflow`` too; each needs its own package and, for W&B / MLflow, their usual environment:
``WANDB_API_KEY``, ``MLFLOW_TRACKING_URI``). The Snakefile hands the setting to the training jobs through the
environment (``SYNERGY_TRACKING``, ``SYNERGY_TRACKING_DIR``; synergy.workflow.jobs), not through ``params:``,
so turning tracking on or off re-trains nothing; the study record leaves ``tracking:`` out as well.

Every training process builds its ``Accelerator`` with ``log_with`` and ``project_dir`` (default
``logs/<study>/tracking``); the main process starts one run per arm (``init_trackers(<arm>, settings)``) and
logs each step's numeric metrics at its step, so a resumed run continues the same curves.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("synergy.train")

TRACKING_ENV = "SYNERGY_TRACKING"
TRACKING_DIR_ENV = "SYNERGY_TRACKING_DIR"
BACKENDS = ("tensorboard", "wandb", "mlflow")


def tracker_kwargs(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``Accelerator`` keyword arguments (``log_with``, ``project_dir``) from the environment; {} when off."""
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get(TRACKING_ENV, "").split(",") if n.strip()]
    if not names:
        return {}
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise ValueError(f"{TRACKING_ENV}: unknown tracker(s) {unknown}; known: {', '.join(BACKENDS)}")
    return {"log_with": names, "project_dir": env.get(TRACKING_DIR_ENV) or "tracking"}


def start(accelerator, run_name: str, settings: Mapping[str, Any]) -> bool:
    """Start the trackers' run for one arm (main process); False when tracking is off."""
    if not getattr(accelerator, "log_with", None):
        return False
    flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in settings.items()}
    accelerator.init_trackers(run_name, config=flat)
    log.info("tracking %s to %s", [str(t) for t in accelerator.log_with], accelerator.project_dir)
    return True


def log_step(accelerator, row: Mapping[str, Any]) -> None:
    """Log a step's finite numeric metrics at its step (a no-op when tracking is off)."""
    if not getattr(accelerator, "log_with", None):
        return
    values = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
              and not isinstance(v, bool) and math.isfinite(float(v))}
    accelerator.log(values, step=int(row["step"]))


def finish(accelerator) -> None:
    if getattr(accelerator, "log_with", None):
        accelerator.end_training()
