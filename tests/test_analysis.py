"""Scores and tables from hand-made graded samples."""
import polars as pl
import pytest

from synergy.analysis import arms_by_bench, by_bench, by_level
from synergy.report.tables import build_arm_table, to_markdown


def _evals():
    rows = []
    # arm a: q1 2/2 correct (10 tokens), q2 1/2 (20 tokens); arm b: q1 0/2, q2 2/2 — bench x
    for arm, q, correct, tokens in [("a", "q1", [1, 1], 10), ("a", "q2", [1, 0], 20),
                                    ("b", "q1", [0, 0], 30), ("b", "q2", [1, 1], 50)]:
        for k, c in enumerate(correct):
            rows.append({"arm": arm, "bench": "x", "id": q, "sample": k, "correct": bool(c), "num_tokens": tokens,
                         "truncated": False})
    return pl.DataFrame(rows)


LEVELS = pl.DataFrame({"bench": ["x", "x"], "id": ["q1", "q2"], "level": ["L1", "L5"]})


def test_accuracy_is_mean_over_questions_of_sample_means():
    got = {r["arm"]: (r["accuracy"], r["length"]) for r in by_bench(_evals()).iter_rows(named=True)}
    assert got == {"a": (75.0, 15.0), "b": (50.0, 40.0)}


def test_by_level_lists_every_level_and_fills_empty_ones():
    t = by_level(_evals(), LEVELS)
    a = {r["level"]: r for r in t.filter(pl.col("arm") == "a").iter_rows(named=True)}
    assert list(a) == ["L1", "L2", "L3", "L4", "L5"]
    assert a["L1"]["accuracy"] == 100.0 and a["L5"]["accuracy"] == 50.0 and a["L3"]["questions"] == 0
    assert a["L3"]["accuracy"] is None


def test_question_without_level_raises():
    with pytest.raises(ValueError, match="no difficulty level.*x/q2"):
        by_level(_evals(), LEVELS.head(1))


def test_arms_by_bench_keeps_order_and_averages_benchmarks():
    ev = pl.concat([_evals(), _evals().with_columns(pl.lit("y").alias("bench"))])
    t = arms_by_bench(ev, ["b", "a", "missing"], ["x", "y"])
    assert t["arm"].to_list() == ["b", "a", "missing"]
    assert t.row(1, named=True) == {"arm": "a", "x": 75.0, "y": 75.0, "Avg": 75.0}
    assert t.row(2, named=True)["Avg"] is None


def test_table1_has_modality_and_data_columns():
    specs = [{"name": "a", "kind": "base"}, {"name": "b", "kind": "sft", "train_set": "t"}]
    sets = [{"name": "t", "modality": "text", "num_questions": 1000}]
    t, title = build_arm_table("table1_sft_data", _evals(), LEVELS, arms=["a", "b"], benches=["x"], arm_specs=specs,
                               train_sets=sets)
    assert t.columns == ["arm", "modality", "data", "x", "Avg"] and "Table 1" in title
    assert t.row(1, named=True)["data"] == "t (1000)" and t.row(1, named=True)["modality"] == "text"
    assert "| b | text | t (1000) | 50.0 | 50.0 |" in to_markdown(t)
