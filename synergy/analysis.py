"""Scores from graded samples: accuracy and response length per arm, benchmark and level (paper §2.3–2.4).

Accuracy of an arm on a benchmark is the mean over questions of the share of its k samples that
are correct (paper: averaged over 4 runs), in percent. Levels come from ``levels.parquet`` (the
base model's pass rate); every question of a benchmark has exactly one level.
Reads parquet only; never imports torch (report rules run in a light environment).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from synergy.config import LEVELS


def per_question(evals: pl.DataFrame) -> pl.DataFrame:
    """One row per (arm, bench, id): accuracy over its samples, mean response tokens, truncation share."""
    return (
        evals.group_by("arm", "bench", "id", maintain_order=True)
        .agg(pl.col("correct").cast(pl.Float64).mean().alias("accuracy"),
             pl.col("num_tokens").cast(pl.Float64).mean().alias("length"),
             pl.col("truncated").cast(pl.Float64).mean().alias("truncated"),
             pl.len().alias("samples"))
    )


def by_bench(evals: pl.DataFrame) -> pl.DataFrame:
    """Per (arm, bench): accuracy (%), mean response length (tokens), questions."""
    return (
        per_question(evals).group_by("arm", "bench", maintain_order=True)
        .agg((pl.col("accuracy").mean() * 100).alias("accuracy"), pl.col("length").mean().alias("length"),
             pl.len().alias("questions"))
    )


def by_level(evals: pl.DataFrame, levels: pl.DataFrame) -> pl.DataFrame:
    """Per (arm, bench, level): questions, accuracy (%), mean length; every level listed, empty ones with nulls."""
    q = per_question(evals).join(levels.select("bench", "id", "level"), on=["bench", "id"], how="left")
    missing = q.filter(pl.col("level").is_null())
    if missing.height:
        ex = missing.row(0, named=True)
        raise ValueError(f"{missing.height} evaluated questions have no difficulty level, e.g. {ex['bench']}/{ex['id']}")
    agg = q.group_by("arm", "bench", "level").agg(
        pl.len().alias("questions"), (pl.col("accuracy").mean() * 100).alias("accuracy"),
        pl.col("length").mean().alias("length"))
    grid = (q.select("arm", "bench").unique(maintain_order=True)
            .join(pl.DataFrame({"level": list(LEVELS)}), how="cross"))
    out = grid.join(agg, on=["arm", "bench", "level"], how="left").with_columns(pl.col("questions").fill_null(0))
    return out


def arms_by_bench(evals: pl.DataFrame, arms: Sequence[str], benches: Sequence[str], value: str = "accuracy") -> pl.DataFrame:
    """Rows = arms (in order), columns = benchmarks (in order) + Avg (mean of the benchmark columns)."""
    scores = by_bench(evals)
    rows = []
    for arm in arms:
        row: dict = {"arm": arm}
        for bench in benches:
            hit = scores.filter((pl.col("arm") == arm) & (pl.col("bench") == bench))
            row[bench] = hit[value].item() if hit.height else None
        vals = [row[b] for b in benches if row[b] is not None]
        row["Avg"] = sum(vals) / len(vals) if len(vals) == len(benches) else None
        rows.append(row)
    return pl.DataFrame(rows, schema={"arm": pl.String, **{b: pl.Float64 for b in benches}, "Avg": pl.Float64})
