"""The rows and batches of long-CoT SFT (paper §2.1): validation split, collation, epochs, micro-batches.

- **Best-epoch split**: ``split_train_val`` holds out ``val_fraction`` of the *training* set by a hash
  of row id and seed (never the benchmarks: choosing on them would select on test data).
- **Batches**: each epoch's order is a shuffle seeded by ``(seed, epoch)`` alone (never the global
  RNG), so a resumed run sees the same order; the last, smaller batch of an epoch is kept
  (``drop_last=False``). Within a batch, rows are ordered by length before they are cut into
  micro-batches, which pads less and changes nothing in the step (the loss is a token sum over the
  whole batch divided by its label tokens).
- **No truncation, no packing**: a sequence longer than ``max_length`` raises ``DataError`` naming
  the row (truncation could cut image tokens). A leading newline of a response is stripped (it
  would merge with the prompt's last token).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence

import torch

from synergy.config import SFTSettings
from synergy.data.schema import DataError, validate_rows
from synergy.prompts import build_prompt
from synergy.train.sft import IGNORE_INDEX, collate_sft


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


def check_rows(rows: Sequence[Mapping]) -> None:
    validate_rows(rows)
    for row in rows:
        resp = row.get("response")
        if not isinstance(resp, str) or not resp.strip():
            raise DataError(f"row id={row.get('id')!r}: no response; SFT rows need a reference trace")


def clean_response(text: str) -> str:
    return text.lstrip("\n")


def collate(processor, rows: Sequence[Mapping], cfg: SFTSettings, image_position: str) -> dict:
    prompts = [build_prompt(r, cfg.reasoning_instruction, image_position) for r in rows]
    responses = [clean_response(r["response"]) for r in rows]
    try:
        return collate_sft(processor, prompts, responses, max_length=cfg.max_length)
    except ValueError as exc:
        m = re.match(r"row (\d+): (\d+) tokens > max_length", str(exc))
        if m:
            rid = rows[int(m.group(1))]["id"]
            raise DataError(f"row id={rid!r}: {m.group(2)} tokens > sft max_length {cfg.max_length}; sequences are "
                            "never truncated (that could cut image tokens): raise max_length or drop the row") from exc
        raise


def label_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Label tokens that enter the loss (targets are labels shifted by one, as in ``sft_loss``)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices of each optimiser step of ``epoch`` (0-based): a shuffle seeded by (seed, epoch)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _length_key(row: Mapping) -> int:
    """A row's rough length: characters of question and response, plus a fixed share per image."""
    return len(row.get("question") or "") + len(row.get("response") or "") + 400 * len(row.get("images") or ())


def micro_batches(rows: list[Mapping], accelerator, micro_batch_size: int) -> list[tuple[list[Mapping], bool]]:
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
