"""Difficulty levels (paper §2.3): thresholds 12/8/5/2 of 16 at every boundary."""
import polars as pl
import pytest

from synergy.difficulty import assign_level, level_counts, levels_from_samples

PAPER = (12, 8, 5, 2)
EXPECTED = {16: "L1", 12: "L1", 11: "L2", 8: "L2", 7: "L3", 5: "L3", 4: "L4", 2: "L4", 1: "L5", 0: "L5"}


@pytest.mark.parametrize("passes,level", sorted(EXPECTED.items()))
def test_paper_thresholds_at_every_boundary(passes, level):
    assert assign_level(passes, PAPER) == level


def test_every_pass_count_gets_exactly_one_level_in_order():
    levels = [assign_level(p, PAPER) for p in range(17)]
    assert levels == sorted(levels, reverse=True)  # more passes never means a harder level
    assert [levels.count(f"L{i}") for i in range(1, 6)] == [5, 4, 3, 3, 2]


def test_negative_passes_raise():
    with pytest.raises(ValueError):
        assign_level(-1, PAPER)


def _samples(bench, qid, passes, n=16):
    return [{"bench": bench, "id": qid, "sample": k, "correct": k < passes, "status": "ok"} for k in range(n)]


def test_levels_from_samples_counts_passes_and_rates():
    rows = _samples("b", "q1", 12) + _samples("b", "q2", 1) + _samples("c", "q3", 7)
    df = levels_from_samples(pl.DataFrame(rows), 16, PAPER)
    got = {r["id"]: (r["passes"], r["pass_rate"], r["level"]) for r in df.iter_rows(named=True)}
    assert got == {"q1": (12, 0.75, "L1"), "q2": (1, 1 / 16, "L5"), "q3": (7, 7 / 16, "L3")}


def test_levels_from_samples_rejects_missing_samples():
    rows = _samples("b", "q1", 3, n=15)
    with pytest.raises(ValueError, match="do not have 16 samples.*q1"):
        levels_from_samples(pl.DataFrame(rows), 16, PAPER)


def test_unverified_samples_are_counted():
    rows = _samples("b", "q1", 0)
    rows[0]["status"] = "timeout"
    df = levels_from_samples(pl.DataFrame(rows), 16, PAPER)
    assert df["unverified"].to_list() == [1]


def test_level_counts_table_has_every_level_and_totals():
    rows = _samples("b", "q1", 16) + _samples("b", "q2", 0) + _samples("c", "q3", 9)
    counts = level_counts(levels_from_samples(pl.DataFrame(rows), 16, PAPER), ["b", "c", "empty"])
    assert counts.columns == ["bench", "L1", "L2", "L3", "L4", "L5", "total"]
    as_dict = {r["bench"]: r for r in counts.iter_rows(named=True)}
    assert as_dict["b"]["L1"] == 1 and as_dict["b"]["L5"] == 1 and as_dict["c"]["L2"] == 1
    assert as_dict["empty"]["total"] == 0 and as_dict["all"]["total"] == 3
