"""The findings check (synergy.findings): verdict rules, and claims that hold, fail and cannot be measured,
on small hand-built evaluation frames whose answer is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from synergy.findings import FindingsConfig, check_findings
from synergy.findings import verdict as V

LEVELS = ("L1", "L2", "L3", "L4", "L5")
N = 40          # questions per level
K = 4           # samples per question


def _evals(arm: str, acc: dict[str, float], length: int = 20, words: int = 0, seed: int = 0) -> pl.DataFrame:
    """K samples for each of N questions per level; the share ``acc[level]`` of samples correct (exactly, per level)."""
    rng = np.random.default_rng(seed)
    rows = []
    for level in LEVELS:
        n_correct = round(acc[level] * N * K)
        flags = np.zeros(N * K, dtype=bool)
        flags[rng.permutation(N * K)[:n_correct]] = True
        for i in range(N):
            for s in range(K):
                rows.append({"arm": arm, "bench": "b", "id": f"{level}-{i}", "correct": bool(flags[i * K + s]),
                             "num_tokens": length, "truncated": False,
                             "response": ("Wait, let me check. " * words) + "\\boxed{1}"})
    return pl.DataFrame(rows)


def _levels() -> pl.DataFrame:
    return pl.DataFrame([{"bench": "b", "id": f"{lv}-{i}", "level": lv} for lv in LEVELS for i in range(N)])


FLAT = dict.fromkeys(LEVELS, 0.5)


def _run(arms: dict[str, pl.DataFrame], roles: dict[str, str], **kw) -> dict[str, dict]:
    evals = pl.concat(list(arms.values()))
    table = check_findings(evals, _levels(), roles, FindingsConfig(), words=("wait", "check"), resamples=400, **kw)
    assert table["claim"].to_list() == [*(f"F{i}" for i in range(1, 15)), "R1"]
    return {r["claim"]: r for r in table.iter_rows(named=True)}


def test_verdict_rules():
    assert V.directional(0.5, 2.0, +1) == V.HOLDS
    assert V.directional(-2.0, -0.5, +1) == V.OPPOSITE
    assert V.directional(-0.5, 2.0, +1) == V.NOT_SHOWN
    assert V.directional(-2.0, -0.5, -1) == V.HOLDS
    assert V.directional(3.5, 5.0, +1, threshold=3.0) == V.HOLDS
    assert V.directional(2.0, 2.9, +1, threshold=3.0) == V.OPPOSITE
    assert V.about_equal(-0.1, 0.2, 0.25) == V.HOLDS
    assert V.about_equal(0.3, 0.5, 0.25) == V.OPPOSITE
    assert V.about_equal(-0.1, 0.5, 0.25) == V.NOT_SHOWN
    assert V.at_most(-3.0, 0.5, 1.0) == V.HOLDS
    assert V.at_most(1.5, 3.0, 1.0) == V.OPPOSITE
    assert V.directional(float("nan"), 1.0, +1) == V.NOT_MEASURABLE
    assert V.combine([V.HOLDS, V.HOLDS]) == V.HOLDS
    assert V.combine([V.HOLDS, V.NOT_SHOWN]) == V.NOT_SHOWN
    assert V.combine([V.HOLDS, V.OPPOSITE]) == V.OPPOSITE


def test_claims_that_hold_and_that_fail():
    base = _evals("base", {"L1": 0.9, "L2": 0.6, "L3": 0.4, "L4": 0.2, "L5": 0.05}, length=20, seed=1)
    # SFT: the paper's shape (loses on L1, gains on L4/L5, long answers with reasoning words)
    sft = _evals("sft-eureka", {"L1": 0.6, "L2": 0.55, "L3": 0.45, "L4": 0.45, "L5": 0.35}, length=150, words=3, seed=2)
    # RL: gains on L2-L4 only, short answers
    rl = _evals("rl", {"L1": 0.9, "L2": 0.8, "L3": 0.6, "L4": 0.35, "L5": 0.05}, length=22, seed=3)
    # rl-nokl does *better* than rl here: F8 must come out opposite
    nokl = _evals("rl-nokl", {"L1": 0.95, "L2": 0.9, "L3": 0.75, "L4": 0.5, "L5": 0.2}, length=22, seed=4)
    rows = _run({"base": base, "sft-eureka": sft, "rl": rl, "rl-nokl": nokl},
                {"base": "base", "sft": "sft-eureka", "rl": "rl", "rl_nokl": "rl-nokl"},
                entropy={"rl": np.array([0.5, 0.52, 0.49, 0.51]), "rl-nokl": np.array([0.2, 0.22, 0.21, 0.19])})
    assert rows["F1"]["verdict"] == V.HOLDS and rows["F1"]["value"] == pytest.approx(-30.0)
    assert rows["F2"]["verdict"] == V.HOLDS and rows["F2"]["value"] == pytest.approx(25.0)   # the smaller of L4, L5
    assert rows["F3"]["verdict"] == V.HOLDS
    assert rows["F4"]["verdict"] == V.HOLDS
    assert rows["F6"]["verdict"] == V.HOLDS and rows["F6"]["value"] == pytest.approx(150 / 22)
    assert rows["F8"]["verdict"] == V.OPPOSITE           # rl - rl-nokl is negative, whatever the entropy says
    assert "entropy" in rows["F8"]["detail"]
    assert rows["F10"]["verdict"] == V.HOLDS
    assert rows["F1"]["ci_low"] < rows["F1"]["value"] < rows["F1"]["ci_high"]


def test_absent_arms_are_not_measurable():
    base = _evals("base", FLAT, seed=1)
    rl = _evals("rl", FLAT, seed=2)
    rows = _run({"base": base, "rl": rl}, {"base": "base", "rl": "rl"})
    for claim in ("F1", "F2", "F3", "F5", "F6", "F7", "F8", "F9", "F11", "F12", "F13", "F14"):
        assert rows[claim]["verdict"] == V.NOT_MEASURABLE, claim
        assert rows[claim]["value"] is None and rows[claim]["detail"]
    # equal accuracy of rl and base: the interval straddles 0
    assert rows["F4"]["verdict"] == V.NOT_SHOWN


def test_dilemma_and_merging_sweep():
    base = _evals("base", FLAT, seed=1)
    # one seed for the sweep: each arm's correct samples are nested in the next one's, as merges of
    # nearby ratios answer mostly the same questions right
    sft = _evals("sft-eureka", dict.fromkeys(LEVELS, 0.55), seed=3)
    rl = _evals("rl", dict.fromkeys(LEVELS, 0.7), seed=3)
    combo = _evals("progressive", dict.fromkeys(LEVELS, 0.9), seed=4)   # beats both parents: the dilemma fails
    sweep = [_evals(f"merge-linear-{r}", dict.fromkeys(LEVELS, a), seed=3) for r, a in [(0.25, 0.66), (0.5, 0.62), (0.75, 0.59)]]
    arms = {"base": base, "sft-eureka": sft, "rl": rl, "progressive": combo, **{s["arm"][0]: s for s in sweep}}
    rows = _run(arms, {"base": "base", "sft": "sft-eureka", "rl": "rl", "progressive": "progressive"},
                merge_sweep=[(0.0, "rl"), (0.25, "merge-linear-0.25"), (0.5, "merge-linear-0.5"),
                             (0.75, "merge-linear-0.75"), (1.0, "sft-eureka")])
    assert rows["F11"]["verdict"] == V.OPPOSITE and rows["F11"]["value"] == pytest.approx(20.0)
    assert rows["F14"]["verdict"] == V.HOLDS             # 70 > 66 > 62 > 59 > 55: monotone
    assert rows["F7"]["verdict"] == V.NOT_MEASURABLE
    bumpy = _evals("merge-linear-0.5", dict.fromkeys(LEVELS, 0.8), seed=3)   # 66 -> 80 -> 59: not monotone
    arms["merge-linear-0.5"] = bumpy
    rows = _run(arms, {"base": "base", "sft": "sft-eureka", "rl": "rl"},
                merge_sweep=[(0.0, "rl"), (0.25, "merge-linear-0.25"), (0.5, "merge-linear-0.5"),
                             (0.75, "merge-linear-0.75"), (1.0, "sft-eureka")])
    assert rows["F14"]["verdict"] == V.OPPOSITE and rows["F14"]["value"] == pytest.approx(80.0 - 66.25)   # 0.66 x 160 samples rounds to 106


def test_missing_question_is_named():
    base = _evals("base", FLAT, seed=1)
    rl = _evals("rl", FLAT, seed=2).filter(pl.col("id") != "L3-7")
    with pytest.raises(ValueError, match="L3-7"):
        check_findings(pl.concat([base, rl]), _levels(), {"base": "base", "rl": "rl"}, resamples=50)
