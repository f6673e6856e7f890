"""Per-question scores of every arm on the same questions, and their paired, level-stratified bootstrap.

Each arm's evaluation samples become one number per question and metric: ``accuracy`` (share of its k
samples that are correct, in %), ``length`` (mean response tokens) and ``words`` (reasoning words per
response, the words of Table 5; synergy.analysis.count_words). The bootstrap resamples questions with
replacement *within their difficulty level* (so every level keeps its size) and uses the same draws for
every arm, which pairs the arms question by question (docs/findings.md §1). ``level_means`` gives, per
draw, the mean of a metric over each level; every statistic of the findings page is built from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from synergy.analysis import count_words, per_question
from synergy.config import LEVELS

METRICS = ("accuracy", "length", "words")


def _words_per_question(evals: pl.DataFrame, words: Sequence[str]) -> pl.DataFrame:
    texts = evals.select("arm", "bench", "id", pl.col("response").fill_null(""))
    counts = [sum(count_words([t], words).values()) for t in texts["response"].to_list()]
    return (texts.with_columns(pl.Series("w", counts, dtype=pl.Float64))
            .group_by("arm", "bench", "id").agg(pl.col("w").mean().alias("words")))


@dataclass
class Frame:
    """Questions (bench, id, level) in a fixed order and each arm's per-question metrics in that order."""

    questions: pl.DataFrame
    values: dict[str, dict[str, np.ndarray]]
    resamples: int = 2000
    seed: int = 0
    _draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def arms(self) -> list[str]:
        return list(self.values)

    def level_sizes(self) -> np.ndarray:
        lv = self.questions["level"].to_list()
        return np.array([lv.count(level) for level in LEVELS], dtype=float)

    def _level_draws(self, level: str) -> np.ndarray:
        if level not in self._draws:
            where = np.flatnonzero(self.questions["level"].to_numpy() == level)
            rng = np.random.default_rng([self.seed, LEVELS.index(level)])
            self._draws[level] = where[rng.integers(0, where.size, size=(self.resamples, where.size))] \
                if where.size else np.zeros((self.resamples, 0), dtype=int)
            self._draws[level + "/point"] = where
        return self._draws[level]

    def level_means(self, arm: str, metric: str) -> np.ndarray:
        """(1 + resamples, 5): row 0 the observed mean per level, then one row per draw; NaN for an empty level."""
        key = (arm, metric)
        if key not in self._cache:
            x = self.values[arm][metric]
            out = np.full((1 + self.resamples, len(LEVELS)), np.nan)
            for j, level in enumerate(LEVELS):
                draws = self._level_draws(level)
                point = self._draws[level + "/point"]
                if point.size:
                    out[0, j] = x[point].mean()
                    out[1:, j] = x[draws].mean(axis=1)
            self._cache[key] = out
        return self._cache[key]

    def pooled(self, arm: str, metric: str, levels: Sequence[str] = LEVELS) -> np.ndarray:
        """(1 + resamples,): the mean over the questions of ``levels`` (levels weighted by their sizes)."""
        cols = [LEVELS.index(level) for level in levels]
        sizes = self.level_sizes()[cols]
        if sizes.sum() == 0:
            return np.full(1 + self.resamples, np.nan)
        means = np.nan_to_num(self.level_means(arm, metric)[:, cols])
        return means @ sizes / sizes.sum()


def build_frame(evals: pl.DataFrame, levels: pl.DataFrame, arms: Sequence[str], words: Sequence[str], *,
                resamples: int = 2000, seed: int = 0) -> Frame:
    """Align ``arms``' evaluations on the first arm's questions; an arm missing a question raises naming it."""
    if not arms:
        raise ValueError("no arms to check")
    pq = per_question(evals).join(_words_per_question(evals, words), on=["arm", "bench", "id"], how="left")
    first = pq.filter(pl.col("arm") == arms[0]).select("bench", "id").sort("bench", "id")
    if first.height == 0:
        raise ValueError(f"no evaluation samples of arm {arms[0]!r}")
    questions = first.join(levels.select("bench", "id", "level"), on=["bench", "id"], how="left")
    lacking = questions.filter(pl.col("level").is_null())
    if lacking.height:
        ex = lacking.row(0, named=True)
        raise ValueError(f"{lacking.height} evaluated questions have no difficulty level, e.g. {ex['bench']}/{ex['id']}")
    values = {}
    for arm in arms:
        rows = questions.select("bench", "id").join(pq.filter(pl.col("arm") == arm), on=["bench", "id"], how="left")
        missing = rows.filter(pl.col("accuracy").is_null())
        if missing.height:
            ex = missing.row(0, named=True)
            raise ValueError(f"arm {arm!r} has no samples of {missing.height} questions that {arms[0]!r} answered, "
                             f"e.g. {ex['bench']}/{ex['id']}")
        values[arm] = {"accuracy": rows["accuracy"].to_numpy() * 100.0, "length": rows["length"].to_numpy(),
                       "words": rows["words"].fill_null(0.0).to_numpy()}
    return Frame(questions, values, resamples=resamples, seed=seed)
