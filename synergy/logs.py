"""Logging for rule scripts: everything goes to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send log records (synergy.* and libraries) to ``log_path`` and stderr, with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers,
                        force=True)
    logging.captureWarnings(True)


def set_threads(threads: int) -> None:
    """Give torch exactly the threads Snakemake gave the job."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
