"""The scorecard's numbers (synergy/scorecard/card.py): a copy of an arm under another name gets that arm's numbers."""
from __future__ import annotations

import random

import polars as pl
import pytest

from synergy.scorecard.card import scorecard


def _evals(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    levels = pl.DataFrame([{"bench": b, "id": f"{b}-{i}", "level": f"L{1 + i % 5}"} for b in ("b1", "b2") for i in range(20)])
    rows = []
    for arm, skill in (("base", 0.3), ("sft", 0.5), ("rl", 0.7)):
        for q in levels.iter_rows(named=True):
            for s in range(4):
                ok = rng.random() < skill * (1.2 - 0.2 * int(q["level"][1]))
                rows.append({"arm": arm, "bench": q["bench"], "id": q["id"], "sample": s, "correct": ok,
                             "num_tokens": rng.randint(5, 50), "truncated": False,
                             "response": "wait, let me check" if arm == "sft" and s == 0 else "so 3"})
    return pl.DataFrame(rows), levels


def test_a_copy_of_an_arm_gets_its_numbers_and_is_closest_to_it():
    evals, levels = _evals()
    copy = evals.filter(pl.col("arm") == "sft").with_columns(pl.lit("sft-copy").alias("arm"))
    both = pl.concat([evals, copy])
    card = scorecard(both, levels, "sft-copy", "base", ["base", "sft", "rl"], resamples=200)
    own = scorecard(both, levels, "sft", "base", ["base", "rl"], resamples=200)
    for key in ("bench", "level", "gain", "words"):
        assert card[key].drop("arm").equals(own[key].drop("arm")), key
    assert card["closest"].row(0, named=True) == {"arm": "sft", "distance": 0.0, "levels": 5}
    assert card["words"].filter(pl.col("word") == "wait")["count"].item() == 40  # one of 4 samples of 40 questions
    gain = card["gain"]
    assert gain.height == (2 + 1) * 5 and (gain["ci_low"] <= gain["gain"]).all() and (gain["gain"] <= gain["ci_high"]).all()


def test_the_pooled_gain_pools_the_questions_of_every_benchmark():
    evals, levels = _evals(1)
    gain = scorecard(evals, levels, "rl", "base", ["base", "sft", "rl"], resamples=200)["gain"]
    pooled = gain.filter(pl.col("bench") == "all")
    per = gain.filter(pl.col("bench") != "all")
    assert pooled["questions"].to_list() == [8] * 5  # 2 benchmarks x 4 questions per level
    for row in pooled.iter_rows(named=True):
        parts = per.filter(pl.col("level") == row["level"])
        mean = (parts["gain"] * parts["questions"]).sum() / parts["questions"].sum()
        assert row["gain"] == pytest.approx(mean) and row["ci_low"] <= row["gain"] <= row["ci_high"]
