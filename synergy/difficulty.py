"""Difficulty levels from the base model's pass rate (paper §2.3; docs/paper.md §5).

Each question is answered ``num_samples`` times (paper: 16) by the base model and graded by the
one grader. Its level comes from the number of correct samples with thresholds ``(12, 8, 5, 2)``:

    L1: passes >= 12   L2: 8..11   L3: 5..7   L4: 2..4   L5: 0..1     (of 16)

Thresholds are counts, not rates, so no rounding decides a boundary; they come from the config.
A sample the grader could not verify (timeout, error) counts as not passed and is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from synergy.config import LEVELS


def assign_level(passes: int, thresholds: Sequence[int]) -> str:
    """The level name of a question with ``passes`` correct samples."""
    if passes < 0:
        raise ValueError(f"passes must be >= 0, got {passes}")
    for name, lower in zip(LEVELS, thresholds):
        if passes >= lower:
            return name
    return LEVELS[len(thresholds)]


def levels_from_samples(samples: pl.DataFrame, num_samples: int, thresholds: Sequence[int]) -> pl.DataFrame:
    """Per question: passes, num_samples, pass_rate and level. Every question must have ``num_samples`` samples."""
    per_q = (
        samples.group_by("bench", "id", maintain_order=True)
        .agg(pl.col("correct").sum().cast(pl.Int32).alias("passes"), pl.len().cast(pl.Int32).alias("num_samples"),
             (pl.col("status").is_in(["timeout", "error"])).sum().cast(pl.Int32).alias("unverified"))
        .sort("bench", "id")
    )
    wrong = per_q.filter(pl.col("num_samples") != num_samples)
    if wrong.height:
        ex = wrong.row(0, named=True)
        raise ValueError(f"{wrong.height} questions do not have {num_samples} samples, e.g. "
                         f"{ex['bench']}/{ex['id']} has {ex['num_samples']}")
    return per_q.with_columns(
        (pl.col("passes") / pl.col("num_samples")).alias("pass_rate"),
        pl.col("passes").map_elements(lambda p: assign_level(p, thresholds), return_dtype=pl.String).alias("level"),
    )


def level_counts(levels: pl.DataFrame, benches: Sequence[str]) -> pl.DataFrame:
    """Questions per benchmark (rows, in config order) and level (columns L1..L5), with totals."""
    rows = []
    for bench in benches:
        sub = levels.filter(pl.col("bench") == bench)
        counts = {lv: sub.filter(pl.col("level") == lv).height for lv in LEVELS}
        rows.append({"bench": bench, **counts, "total": sub.height})
    total = {"bench": "all", **{lv: sum(r[lv] for r in rows) for lv in LEVELS}, "total": sum(r["total"] for r in rows)}
    return pl.DataFrame([*rows, total])


def levels_from_tags(rows: Sequence[dict], num_samples: int, thresholds: Sequence[int]) -> pl.DataFrame:
    """Levels of a benchmark read with ``levels: paper``: the paper's tag kept in each row's ``meta``.

    ``meta.paper_level`` (L1..L5) is taken as is (passes unknown: null); ``meta.paper_passes`` (correct
    runs of ``num_samples``) is binned with ``thresholds`` like a measured pass count. Same columns as
    ``levels_from_samples``.
    """
    import json

    out = []
    for row in rows:
        meta = json.loads(row.get("meta") or "{}")
        passes = meta.get("paper_passes")
        if passes is not None:
            if not 0 <= int(passes) <= num_samples:
                raise ValueError(f"{row['bench']}/{row['id']}: paper pass count {passes} is not in 0..{num_samples}")
            level = assign_level(int(passes), thresholds)
        elif meta.get("paper_level") in LEVELS:
            level = meta["paper_level"]
        else:
            raise ValueError(f"{row['bench']}/{row['id']}: no paper difficulty tag in meta (the benchmark was not "
                             f"loaded with levels: paper)")
        out.append({"bench": row["bench"], "id": row["id"], "passes": passes,
                    "num_samples": num_samples if passes is not None else None, "unverified": 0,
                    "pass_rate": passes / num_samples if passes is not None else None, "level": level})
    return pl.DataFrame(out, schema={"bench": pl.String, "id": pl.String, "passes": pl.Int32, "num_samples": pl.Int32,
                                     "unverified": pl.Int32, "pass_rate": pl.Float64, "level": pl.String})
