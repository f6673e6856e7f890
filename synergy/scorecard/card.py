"""The scorecard of one arm against the base model's levels (docs/scorecard.md §3); pure, from evaluation rows.

Not a paper section; it applies the paper's lens (§2.3 levels, §2.4 evaluation, Fig. 1 per-level gains with
the report's paired bootstrap, Table 5 reasoning words) to one checkpoint: accuracy per benchmark and per level,
gain over the base model per level with 95% paired-bootstrap intervals (synergy.analysis.level_gains; per
benchmark, and pooled over the benchmarks as benchmark ``all``, questions resampled within each level), mean
response length per level, reasoning-word counts, and the study arm whose per-level accuracy profile is closest
(the smallest mean absolute difference over the levels that have questions, pooled over benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from synergy.analysis import REASONING_WORDS, by_bench, level_gains, per_question, reasoning_word_counts
from synergy.config import LEVELS

POOLED = "all"  # the benchmark name of the rows pooled over every benchmark


def pooled_levels(evals: pl.DataFrame, levels: pl.DataFrame, arms: Sequence[str]) -> pl.DataFrame:
    """Per (arm, level), pooled over benchmarks: questions, accuracy (%), mean response length (tokens)."""
    q = per_question(evals.filter(pl.col("arm").is_in(list(arms)))).join(
        levels.select("bench", "id", "level"), on=["bench", "id"], how="inner")
    return (q.group_by("arm", "level").agg(pl.len().alias("questions"), (pl.col("accuracy").mean() * 100).alias("accuracy"),
                                          pl.col("length").mean().alias("length"))
            .sort("arm", pl.col("level").replace_strict(list(LEVELS), list(range(len(LEVELS))))))


def closest_arms(evals: pl.DataFrame, levels: pl.DataFrame, arm: str, others: Sequence[str]) -> pl.DataFrame:
    """Every other arm with the mean absolute difference (points) of its per-level accuracy from ``arm``'s, closest first."""
    prof = pooled_levels(evals, levels, [arm, *others])
    mine = prof.filter(pl.col("arm") == arm).select("level", pl.col("accuracy").alias("mine"))
    rows = []
    for other in others:
        j = prof.filter(pl.col("arm") == other).join(mine, on="level")
        if j.height:
            rows.append({"arm": other, "distance": float((j["accuracy"] - j["mine"]).abs().mean()), "levels": j.height})
    if not rows:
        raise ValueError(f"no study arm shares a difficulty level with {arm!r}: nothing to compare its profile with")
    return pl.DataFrame(rows).sort("distance", "arm")


def _gains(evals: pl.DataFrame, levels: pl.DataFrame, arm: str, base: str, **bootstrap) -> pl.DataFrame:
    """level_gains of ``arm`` over ``base``, its bootstrap seeded by the cell, not the arm's name: the same
    evaluation rows under any name give the same intervals (a copy's scorecard equals the arm's)."""
    label = "scorecard"
    mine = evals.filter(pl.col("arm") == arm).with_columns(pl.lit(label).alias("arm"))
    ref = evals.filter(pl.col("arm") == base)
    both = pl.concat([mine, ref], how="diagonal_relaxed")
    out = level_gains(both, levels, [(label, base)], **bootstrap)
    # pooled over the benchmarks: one "benchmark" ``all`` whose question ids keep their benchmark
    key = (pl.col("bench") + "/" + pl.col("id")).alias("id")
    pooled = level_gains(both.with_columns(key, pl.lit(POOLED).alias("bench")),
                         levels.with_columns(key, pl.lit(POOLED).alias("bench")), [(label, base)], **bootstrap)
    return pl.concat([out, pooled]).with_columns(pl.lit(arm).alias("arm"))


def scorecard(evals: pl.DataFrame, levels: pl.DataFrame, arm: str, base: str, study_arms: Sequence[str], *,
              words: Sequence[str] = REASONING_WORDS, resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, pl.DataFrame]:
    """The scorecard's tables of ``arm`` (``evals`` holds its rows, the base model's and the study arms')."""
    if evals.filter(pl.col("arm") == arm).height == 0:
        raise ValueError(f"no evaluation samples of {arm!r}")
    return {
        "bench": by_bench(evals.filter(pl.col("arm") == arm)),
        "level": pooled_levels(evals, levels, [arm]),
        "gain": _gains(evals, levels, arm, base, resamples=resamples, confidence=confidence, seed=seed),
        "words": reasoning_word_counts(evals, [arm], words),
        "closest": closest_arms(evals, levels, arm, [a for a in study_arms if a != arm]),
    }
