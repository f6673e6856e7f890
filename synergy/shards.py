"""Sharded generation: one benchmark's questions split over several jobs, then gathered (docs/slurm.md).

The paper's difficulty sampling (§2.3: 16 samples of up to 24k tokens per question) and evaluation
(§2.4: 4 samples per question per arm) of a whole benchmark are too long for one GPU job on a 7B
model, so the study config's ``sharding:`` section splits each benchmark into ``count`` shards: rule
``sample_difficulty`` (``evaluate``) then runs once per shard, on the questions of its shard only,
and rule ``gather_difficulty`` (``gather_eval``) concatenates the shards into the same file an
unsharded run writes. The paper is silent on how generation was parallelised (a cluster detail).

Shards are contiguous slices of the benchmark's rows in file order, as equal as possible (sizes
differ by at most one); shard ``i`` of ``n`` samples with its own derived seed, so a sharded run is
as deterministic as an unsharded one but does not draw the same samples (documented in
config/config.yaml). The gather checks that every shard belongs to the same split, that no
question appears twice and that the shards hold exactly the benchmark's questions, in order, and
fails naming the shard otherwise: a shard written by another config can never be silently mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import polars as pl

T = TypeVar("T")


class ShardError(ValueError):
    """Shards that do not add up to their benchmark (a missing, duplicated or foreign shard)."""


def shard_bounds(num_rows: int, index: int, count: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of shard ``index`` (0-based) of ``count``: contiguous, sizes differ by <= 1."""
    if count < 1:
        raise ShardError(f"shard count must be at least 1, got {count}")
    if not 0 <= index < count:
        raise ShardError(f"shard index {index} is outside 0..{count - 1}")
    if num_rows < 0:
        raise ShardError(f"a benchmark cannot have {num_rows} rows")
    base, extra = divmod(num_rows, count)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def select_shard(rows: Sequence[T], index: int, count: int) -> list[T]:
    """The rows of shard ``index`` of ``count`` (all rows when ``count`` is 1)."""
    start, stop = shard_bounds(len(rows), index, count)
    return list(rows[start:stop])


def gather(frames: Sequence[pl.DataFrame], expected_ids: Sequence[str], *, names: Sequence[str] | None = None,
           id_column: str = "id") -> pl.DataFrame:
    """Concatenate shard outputs (in shard order) and check they hold exactly ``expected_ids``, in order.

    Each frame holds one or more rows per question (n samples); the question order of the concatenation
    must be the benchmark's. ``names`` label the shards in error messages (their paths).
    """
    names = list(names) if names is not None else [f"shard {i}" for i in range(len(frames))]
    if len(names) != len(frames):
        raise ShardError(f"{len(frames)} shards but {len(names)} names")
    if not frames:
        raise ShardError("no shards to gather")
    count = len(frames)
    seen: dict[str, str] = {}
    for i, (frame, name) in enumerate(zip(frames, names)):
        if id_column not in frame.columns:
            raise ShardError(f"{name}: no column {id_column!r} (columns: {frame.columns})")
        start, stop = shard_bounds(len(expected_ids), i, count)
        want = list(expected_ids[start:stop])
        got = list(dict.fromkeys(frame[id_column].to_list()))  # question ids in first-seen order
        for qid in got:
            if qid in seen:
                raise ShardError(f"{name}: question {qid!r} is also in {seen[qid]}")
            seen[qid] = name
        if got != want:
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            detail = (f"missing {len(missing)} (e.g. {missing[:3]})" if missing else "") + \
                     (f"{'; ' if missing else ''}{len(extra)} not of this shard (e.g. {extra[:3]})" if extra else "")
            raise ShardError(f"{name}: holds questions other than shard {i} of {count} of the benchmark "
                             f"({detail or 'in another order'}); was it written with another sharding or benchmark?")
    schemas = {tuple(f.schema.items()) for f in frames if f.height}
    if len(schemas) > 1:
        raise ShardError(f"shards have different columns or types: {[list(s) for s in schemas]}")
    return pl.concat([f for f in frames if f.height] or frames[:1], how="vertical")
