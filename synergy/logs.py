"""Logging for rule scripts: everything goes to the rule's log file and to stderr.

Secrets never reach a log: every record (message, arguments and traceback) is formatted first and
then any value of a secret environment variable (``SECRET_ENV_VARS``: the Hugging Face hub tokens
and the like) is replaced by ``***``. An exception that ends a rule script goes through the same
path (``sys.excepthook``), so its traceback lands in the rule's log file, redacted, instead of only
on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HF_API_TOKEN", "WANDB_API_KEY",
                   "OPENAI_API_KEY")
"""Environment variables whose values are redacted from every log line."""

REDACTED = "***"
_MIN_SECRET_LEN = 6  # shorter values ("1", "yes") would blank out ordinary text


def secret_values() -> list[str]:
    """The current values of ``SECRET_ENV_VARS`` worth redacting, longest first."""
    values = {os.environ.get(name, "").strip() for name in SECRET_ENV_VARS}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """A Formatter whose output (message, arguments, traceback, stack) never contains a secret value."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("synergy").critical("uncaught %s: the job failed", exc_type.__name__, exc_info=(exc_type, exc, tb))


def _not_progress_on_a_terminal(record: logging.LogRecord) -> bool:
    """A terminal shows progress as a tqdm bar (synergy.progress): its progress lines go to the log file only."""
    return not (getattr(record, "progress", False) and _isatty(sys.stderr))


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send log records (synergy.* and libraries) to ``log_path`` and stderr, with timestamps, secrets redacted."""
    terminal = logging.StreamHandler(sys.stderr)
    terminal.addFilter(_not_progress_on_a_terminal)
    handlers: list[logging.Handler] = [terminal]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in handlers:
        h.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    logging.captureWarnings(True)
    sys.excepthook = _excepthook


def set_threads(threads: int) -> None:
    """Give torch exactly the threads Snakemake gave the job."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
