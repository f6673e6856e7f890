"""GRPO step 1 (paper §2.2): which questions a step trains on, and the "w/o easiest" filter.

Data order: one continuous stream over per-epoch shuffles seeded by (seed, epoch); a step may
straddle two epochs (no ``drop_last``). ``drop_easy`` (paper §2.2 "w/o easiest") is applied by the
caller with ``drop_easy_questions`` before training. The sampling seed of a step is a function of
(run seed, step, process), so a resumed run samples exactly what the uninterrupted run sampled.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Mapping, Sequence

import polars as pl

log = logging.getLogger("synergy.train")


def drop_easy_questions(rows: Sequence[Mapping], samples: pl.DataFrame, num_generations: int) -> tuple[list, int]:
    """Paper §2.2 "w/o easiest": drop the rows the base model answered correctly in all G rollouts.

    ``samples`` has one row per rollout with columns ``id`` and ``correct`` (e.g. the output of
    rule ``sample_train_pass_rates``). A question with more than ``num_generations`` rollouts is
    judged on its first ``num_generations`` (by the ``sample`` column when present, else in frame
    order). Returns (kept rows in their order, number dropped). A row with fewer than
    ``num_generations`` rollouts raises ``ValueError`` naming it.
    """
    missing_cols = {"id", "correct"} - set(samples.columns)
    if missing_cols:
        raise ValueError(f"samples frame lacks columns {sorted(missing_cols)}")
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    s = samples.with_row_index("_order")
    s = s.sort(["id", "sample", "_order"] if "sample" in s.columns else ["id", "_order"])
    per_id = s.group_by("id", maintain_order=True).agg(
        pl.len().alias("n"), pl.col("correct").head(num_generations).cast(pl.Int64).sum().alias("passes")
    )
    stats = {r["id"]: (r["n"], r["passes"]) for r in per_id.iter_rows(named=True)}
    kept, dropped = [], 0
    for row in rows:
        n, passes = stats.get(row["id"], (0, 0))
        if n < num_generations:
            raise ValueError(f"row id={row['id']!r} has {n} base-model rollouts in the samples, "
                             f"need {num_generations} to decide whether it is easy")
        if passes == num_generations:
            dropped += 1
        else:
            kept.append(row)
    log.info("drop_easy: dropped %d of %d questions solved in all %d rollouts", dropped, len(rows), num_generations)
    return kept, dropped


@functools.lru_cache(maxsize=8)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch * 7_919 + 17).shuffle(order)
    return tuple(order)


def step_row_indices(num_rows: int, prompts_per_step: int, seed: int, step: int) -> list[int]:
    """Indices of step ``step``'s prompts (0-based step): a stream over per-epoch shuffles of the rows."""
    out = []
    for k in range(step * prompts_per_step, (step + 1) * prompts_per_step):
        epoch, pos = divmod(k, num_rows)
        out.append(_epoch_order(num_rows, seed, epoch)[pos])
    return out


def process_rows(indices: Sequence[int], mini_batch_size: int, updates: int, rank: int, world: int) -> list[int]:
    """This process's share of a step's prompts: every ``world``-th prompt of each mini-batch, from ``rank``."""
    return [i for m in range(updates) for i in indices[m * mini_batch_size: (m + 1) * mini_batch_size][rank::world]]


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The sampling seed of (run seed, step, process)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + 0x6790) % (2**31 - 1)
