"""Scores from graded samples: accuracy and length per arm, benchmark and level (paper §2.3–2.4), per-level
gains with bootstrap intervals (Fig. 1 / 5 / 6) and reasoning-word counts (Table 5 / Fig. 10).

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


# --------------------------------------------------------------------------- bootstrap intervals
# Per-level gains (paper Fig. 1 / 6, Fig. 5) get 95% intervals from a paired percentile bootstrap
# over questions: the questions of one (benchmark, level) cell are resampled with replacement, and
# the gain is the mean over the resampled questions of (arm accuracy - reference accuracy), each
# accuracy being the share of the question's k samples that are correct. The paper shows no
# intervals (docs/paper.md §9); resampling questions, not samples, is our choice: questions are
# the unit the benchmark draws, and a question's k samples are not independent of each other.


def bootstrap_mean_ci(values, resamples: int = 2000, confidence: float = 0.95,
                      seed: int | Sequence[int] = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its percentile bootstrap interval.

    ``values`` are one number per question; ``resamples`` means of as many values drawn with
    replacement give the interval's percentiles ((1 - confidence) / 2 and its complement).
    An empty sample gives NaNs; a single value gives a zero-width interval.
    """
    import numpy as np

    x = np.asarray(values, dtype=float)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if np.isnan(x).any():
        raise ValueError("bootstrap values contain NaN")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)


def _cell_seed(seed: int, *names: str) -> list[int]:
    """A bootstrap seed per cell, stable when other arms, benchmarks or levels are added."""
    import zlib

    return [seed, zlib.crc32("/".join(names).encode())]


def level_gains(evals: pl.DataFrame, levels: pl.DataFrame, pairs: Sequence[tuple[str, str]], *,
                resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """Per (arm, reference, bench, level): accuracy of both (%), the gain (points) and its bootstrap interval.

    ``pairs`` are (arm, reference) arm names, e.g. every arm against the base model (paper Fig. 1)
    or ``rl`` against ``rl-noeasy`` (Fig. 5). Both arms must have evaluated the same questions;
    a question one of them lacks, or one without a difficulty level, raises naming it. Every level
    is listed; an empty level has questions 0 and null values.
    """
    q = per_question(evals).join(levels.select("bench", "id", "level"), on=["bench", "id"], how="left")
    missing = q.filter(pl.col("level").is_null())
    if missing.height:
        ex = missing.row(0, named=True)
        raise ValueError(f"{missing.height} evaluated questions have no difficulty level, e.g. {ex['bench']}/{ex['id']}")
    rows = []
    for arm, ref in pairs:
        a = q.filter(pl.col("arm") == arm).select("bench", "id", "level", pl.col("accuracy").alias("a"))
        r = q.filter(pl.col("arm") == ref).select("bench", "id", pl.col("accuracy").alias("r"))
        for name, df in ((arm, a), (ref, r)):
            if df.height == 0:
                raise ValueError(f"no evaluation samples of arm {name!r} (pair {arm} vs {ref})")
        j = a.join(r, on=["bench", "id"], how="full", coalesce=True)
        lone = j.filter(pl.col("a").is_null() | pl.col("r").is_null())
        if lone.height:
            ex = lone.row(0, named=True)
            who = ref if ex["r"] is None else arm
            raise ValueError(f"{lone.height} questions are evaluated for only one of {arm!r} and {ref!r}, "
                             f"e.g. {ex['bench']}/{ex['id']} has no samples of {who!r}")
        for bench in j["bench"].unique(maintain_order=True).to_list():
            for level in LEVELS:
                cell = j.filter((pl.col("bench") == bench) & (pl.col("level") == level))
                row = {"arm": arm, "reference": ref, "bench": bench, "level": level, "questions": cell.height,
                       "accuracy": None, "reference_accuracy": None, "gain": None, "ci_low": None, "ci_high": None}
                if cell.height:
                    diff = (cell["a"] - cell["r"]).to_numpy() * 100
                    gain, low, high = bootstrap_mean_ci(diff, resamples, confidence, _cell_seed(seed, arm, ref, bench, level))
                    row.update(accuracy=cell["a"].mean() * 100, reference_accuracy=cell["r"].mean() * 100,
                               gain=gain, ci_low=low, ci_high=high)
                rows.append(row)
    schema = {"arm": pl.String, "reference": pl.String, "bench": pl.String, "level": pl.String,
              "questions": pl.Int64, "accuracy": pl.Float64, "reference_accuracy": pl.Float64,
              "gain": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


# --------------------------------------------------------------------------- reasoning words
# Paper Table 5 counts "wait", "check", "mistake", "alternative" and "however" in the answers of
# the base, SFT and RL models on MathVision (Fig. 10: every method); its unit and number of runs
# are not stated (docs/paper.md §8). We add "hmm" and "verify", two of the "reasoning pivotal
# tokens" of its Fig. 7 (meta and action words). A word is counted where it starts a word, case
# folded, whatever follows: "Alternatively" counts as "alternative", "double-checking" and
# "checked" as "check", "mistakes" as "mistake" (R1-style traces say "Alternatively" far more
# often than "alternative"). The table reports the raw count and, because arms may have different
# numbers of responses, occurrences per 1,000 responses.

REASONING_WORDS = ("wait", "check", "mistake", "alternative", "however", "hmm", "verify")


def _word_pattern(word: str):
    import re

    if not word.strip():
        raise ValueError("an empty reasoning word")
    return re.compile(r"(?<!\w)" + re.escape(word.strip().lower()), re.IGNORECASE)


def count_words(texts, words: Sequence[str] = REASONING_WORDS) -> dict[str, int]:
    """Occurrences of each word (as a word start, any case, any ending) over all ``texts``."""
    patterns = {w: _word_pattern(w) for w in words}
    counts = dict.fromkeys(words, 0)
    for text in texts:
        if text is None:
            continue
        for w, p in patterns.items():
            counts[w] += len(p.findall(text))
    return counts


def reasoning_word_counts(evals: pl.DataFrame, arms: Sequence[str], words: Sequence[str] = REASONING_WORDS,
                          benches: Sequence[str] | None = None) -> pl.DataFrame:
    """Long table (arm, word, count, responses, per_1k) over the responses of ``benches`` (all when None).

    An arm listed in ``arms`` without responses raises: the table would otherwise show zeros for it.
    """
    ev = evals if not benches else evals.filter(pl.col("bench").is_in(list(benches)))
    rows = []
    for arm in arms:
        texts = ev.filter(pl.col("arm") == arm)["response"].to_list()
        if not texts:
            raise ValueError(f"no responses of arm {arm!r} on benchmarks {list(benches) if benches else 'any'}")
        for word, n in count_words(texts, words).items():
            rows.append({"arm": arm, "word": word, "count": n, "responses": len(texts),
                         "per_1k": 1000.0 * n / len(texts)})
    return pl.DataFrame(rows, schema={"arm": pl.String, "word": pl.String, "count": pl.Int64,
                                      "responses": pl.Int64, "per_1k": pl.Float64})
