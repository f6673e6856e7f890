"""The scorecard's files (docs/scorecard.md §4): ``results/<study>/scorecards/{arm}.csv``, ``.md`` and ``.pdf``.

Not a paper section; the pages apply the paper's Fig. 1 lens (gain over the base model by difficulty level)
and Table 5's reasoning words to one checkpoint. The CSV holds every number of the card in one tidy table
(column ``table`` names the part: bench, level, gain, words, closest); the Markdown and the PDF show the same
numbers for people: a first page with the per-level accuracy of the arm, the base model and the closest study
arm, and the pooled gain with its interval, then each table. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from synergy.io import atomic_path, write_text
from synergy.report.pdf import PAGE, table_pages
from synergy.report.tables import to_markdown
from synergy.scorecard.card import POOLED

PARTS = {  # key of synergy.scorecard.card.scorecard -> title
    "bench": "Accuracy by benchmark (%; length: mean tokens per response)",
    "level": "Accuracy and response length by difficulty level, pooled over the benchmarks",
    "gain": "Gain over the base model by level (points; 95% paired-bootstrap interval, questions resampled)",
    "words": "Reasoning words in the responses (Table 5's words; per 1k: per 1,000 responses)",
    "closest": "Study arms by the distance of their per-level accuracy profile (mean |difference|, points)",
}


def _shown(card: Mapping[str, pl.DataFrame], key: str) -> pl.DataFrame:
    """A part as shown to people: without the scored arm's own name (the ``closest`` part's ``arm`` is the other)."""
    df = card[key].drop("reference", strict=False)
    return df if key == "closest" else df.drop("arm", strict=False)


def card_csv(card: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Every part of the card in one table, ``table`` naming the part (columns a part lacks are empty)."""
    return pl.concat([card[k].with_columns(pl.lit(k).alias("table")).select("table", pl.exclude("table"))
                      for k in PARTS], how="diagonal_relaxed")


def card_markdown(card: Mapping[str, pl.DataFrame], arm: str, facts: Mapping[str, str]) -> str:
    lines = [f"# Scorecard: {arm}", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
    for key, title in PARTS.items():
        lines += [f"## {title}", "", to_markdown(_shown(card, key))]
    return "\n".join(lines)


def _summary_page(card: Mapping[str, pl.DataFrame], profiles: pl.DataFrame, arm: str, base: str,
                  facts: Mapping[str, str]) -> Figure:
    fig = Figure(figsize=PAGE)
    fig.text(0.04, 0.955, f"Scorecard: {arm}", fontsize=15, weight="bold", va="top")
    fig.text(0.04, 0.91, "\n".join(f"{k}: {v}" for k, v in facts.items()), fontsize=9, va="top", color="0.25")
    closest = card["closest"]["arm"][0]
    ax = fig.add_axes((0.07, 0.1, 0.4, 0.6))
    lines = [(arm, arm, dict(color="C3", marker="o", lw=2))]
    if base != arm:
        lines.append((base, base, dict(color="0.4", marker="s", ls="--")))
    if closest not in (arm, base):
        lines.append((closest, f"{closest} (closest profile)", dict(color="C0", marker="^", ls=":")))
    for name, label, style in lines:
        prof = profiles.filter(pl.col("arm") == name)
        ax.plot(prof["level"].to_list(), prof["accuracy"].to_list(), label=label, **style)
    ax.set(xlabel="difficulty level (base model's pass rate)", ylabel="accuracy (%)", ylim=(0, 100),
           title="Accuracy by level, pooled over the benchmarks")
    ax.legend(fontsize=8)
    gain = card["gain"].filter((pl.col("bench") == POOLED) & pl.col("gain").is_not_null())
    ax2 = fig.add_axes((0.56, 0.1, 0.4, 0.6))
    lv = gain["level"].to_list()
    g = gain["gain"].to_numpy()
    err = [g - gain["ci_low"].to_numpy(), gain["ci_high"].to_numpy() - g]
    ax2.bar(lv, g, color=["C2" if x >= 0 else "C3" for x in g], yerr=err, capsize=4)
    ax2.axhline(0, color="0.3", lw=0.8)
    ax2.set(xlabel="difficulty level", ylabel=f"gain over {base} (points)", title="Gain over the base model (95% interval)")
    return fig


def write_scorecard(card: Mapping[str, pl.DataFrame], profiles: pl.DataFrame, arm: str, base: str,
                    facts: Mapping[str, str], paths: Mapping[str, str | Path]) -> None:
    """Write the card's ``csv``, ``md`` and ``pdf`` (``paths`` by extension); ``profiles``: per-level accuracy
    of every study arm (synergy.scorecard.card.pooled_levels), for the first page's lines."""
    write_text(card_csv(card).write_csv(), paths["csv"])
    write_text(card_markdown(card, arm, facts), paths["md"])
    with atomic_path(paths["pdf"]) as tmp, PdfPages(tmp, metadata={"Title": f"synergy scorecard: {arm}",
                                                                  "CreationDate": None, "ModDate": None}) as pdf:
        pdf.savefig(_summary_page(card, profiles, arm, base, facts))
        for key, title in PARTS.items():
            for fig in table_pages(_shown(card, key).to_pandas(), title):
                pdf.savefig(fig)
