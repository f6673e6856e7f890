"""The report's own tables and the page layout of every table (paper Table 5; Fig. 1 / 5 / 6 data).

- ``level_gain``: per (arm, reference, benchmark, level) accuracy gain with its bootstrap interval
  (synergy.analysis.level_gains); the data behind Fig. 1, 5 and 6.
- ``table5_reasoning_words``: reasoning-word counts per arm (synergy.analysis.reasoning_word_counts).
  The CSV is long (arm, word, count, responses, per_1k); the Markdown has the paper's layout, one row
  per word and one column per arm, in occurrences per 1,000 responses.

``report_layout`` turns the long tables (level_accuracy, level_gain, table5, table7, merge_grid) into
the wide layout a reader expects on a page. Reads and writes CSV / Markdown only; never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import polars as pl

from synergy.analysis import level_gains, reasoning_word_counts
from synergy.config import LEVELS
from synergy.io import write_text
from synergy.report.tables import to_markdown

GAIN_TITLE = ("Accuracy gain (points) of each arm over its reference by benchmark and level, with "
              "{pct}% bootstrap intervals ({resamples} resamples of the questions)")
WORDS_TITLE = "Table 5: reasoning words per 1,000 responses on {benches}"


def level_gain_table(evals: pl.DataFrame, levels: pl.DataFrame, pairs: Sequence[Sequence[str]], *,
                     resamples: int, confidence: float, seed: int) -> tuple[pl.DataFrame, str]:
    table = level_gains(evals, levels, [tuple(p) for p in pairs], resamples=resamples, confidence=confidence, seed=seed)
    return table, GAIN_TITLE.format(pct=f"{confidence * 100:g}", resamples=resamples)


def words_table(evals: pl.DataFrame, arms: Sequence[str], words: Sequence[str], benches: Sequence[str],
                note: str = "") -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(long table, wide table for people, title)."""
    long = reasoning_word_counts(evals, arms, words, benches)
    wide = words_wide(long)
    title = WORDS_TITLE.format(benches=", ".join(benches)) + (f" ({note})" if note else "")
    return long, wide, title


def words_wide(long: pl.DataFrame) -> pl.DataFrame:
    """One row per word, one column per arm (occurrences per 1,000 responses), arms and words in order."""
    arms = list(dict.fromkeys(long["arm"].to_list()))
    words = list(dict.fromkeys(long["word"].to_list()))
    rows = []
    for w in words:
        row = {"word": w}
        for a in arms:
            hit = long.filter((pl.col("arm") == a) & (pl.col("word") == w))
            row[a] = hit["per_1k"].item() if hit.height else None
        rows.append(row)
    return pl.DataFrame(rows, schema={"word": pl.String, **{a: pl.Float64 for a in arms}})


def write_words_table(long: pl.DataFrame, wide: pl.DataFrame, title: str, csv_path: str | Path,
                      md_path: str | Path) -> None:
    """Long CSV for machines; Markdown in the paper's layout, with the responses counted per arm."""
    write_text(long.write_csv(), csv_path)
    counted = long.unique("arm", maintain_order=True)
    footer = "Responses counted: " + ", ".join(f"{a} {n}" for a, n in zip(counted["arm"], counted["responses"]))
    write_text(f"# {title}\n\n{to_markdown(wide)}\n{footer}\n", md_path)


def md_title(md_path: str | Path, default: str) -> str:
    """The caption of a table: the first line of its Markdown file (``# Title``)."""
    try:
        first = Path(md_path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return default
    return first[2:].strip() if first.startswith("# ") else default


def _acc_length(accuracy, length) -> str:
    """One level_accuracy cell of the report: ``"59.4 (6)"``; a level without questions stays empty."""
    if pd.isna(accuracy):
        return "–"
    return f"{accuracy:.1f} ({length:.0f})" if not pd.isna(length) else f"{accuracy:.1f}"


def _pivot(df: pd.DataFrame, index: list[str], columns: str, values: str, order: Sequence[str]) -> pd.DataFrame:
    """Rows: the ``index`` combinations that occur, in order of first appearance; columns: ``order``."""
    wide = df.set_index([*index, columns])[values].unstack(columns)
    rows = list(dict.fromkeys(df[index].itertuples(index=False, name=None)))
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=index) if len(index) > 1 else [r[0] for r in rows],
                        columns=[c for c in order if c in wide.columns])
    wide.columns.name = None
    return wide.reset_index()


def report_layout(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The table as it is printed in the report, and a note on how it was reshaped ("" if not)."""
    if name == "level_accuracy" and {"arm", "bench", "level", "accuracy", "length"} <= set(df.columns):
        d = df.copy()
        d["cell"] = [_acc_length(a, n) for a, n in zip(d["accuracy"], d["length"])]
        return (_pivot(d, ["arm", "bench"], "level", "cell", LEVELS),
                "accuracy (%) and, in brackets, mean response length (tokens) per level; columns L1..L5")
    if name == "level_accuracy" and {"arm", "bench", "level", "accuracy"} <= set(df.columns):
        return _pivot(df, ["arm", "bench"], "level", "accuracy", LEVELS), "accuracy (%) per level; columns L1..L5"
    if name == "level_gain" and {"arm", "reference", "bench", "level", "gain"} <= set(df.columns):
        d = df.copy()
        d["cell"] = [_interval(g, lo, hi) for g, lo, hi in zip(d["gain"], d["ci_low"], d["ci_high"])]
        return _pivot(d, ["arm", "reference", "bench"], "level", "cell", LEVELS), "gain [95% interval] per level"
    if name == "table5_reasoning_words" and {"arm", "word", "per_1k"} <= set(df.columns):
        arms = list(dict.fromkeys(df["arm"]))
        return _pivot(df, ["word"], "arm", "per_1k", arms), "occurrences per 1,000 responses"
    if name == "table7_length" and {"arm", "bench", "accuracy", "length"} <= set(df.columns):
        benches = list(dict.fromkeys(df["bench"]))
        parts = [_pivot(df, ["arm"], "bench", v, benches).assign(metric=label)
                 for v, label in (("length", "length (tokens)"), ("accuracy", "accuracy (%)"))]
        out = pd.concat(parts, ignore_index=True)
        return out[["metric", "arm", *benches]], ""
    if name == "findings" and {"claim", "statement", "value", "ci_low", "ci_high", "verdict"} <= set(df.columns):
        from synergy.findings.verdict import RULE_TEXT

        d = df.copy()
        d["value [95% interval]"] = [_interval(g, lo, hi) for g, lo, hi in zip(d["value"], d["ci_low"], d["ci_high"])]
        d["statement"] = [s if len(s) <= 62 else s[:59] + "..." for s in d["statement"]]
        return d[["claim", "statement", "source", "value [95% interval]", "paper", "verdict"]], RULE_TEXT
    if name == "merge_grid" and {"method", "sft_ratio", "arm", "bench", "accuracy"} <= set(df.columns):
        benches = list(dict.fromkeys(df["bench"]))
        return _pivot(df, ["method", "sft_ratio", "arm"], "bench", "accuracy", benches), "accuracy (%) per benchmark"
    return df, ""


def _interval(g, lo, hi) -> str:
    if pd.isna(g):
        return "–"
    return f"{g:+.1f} [{lo:+.1f}, {hi:+.1f}]"
