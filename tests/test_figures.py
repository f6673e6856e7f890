"""Bootstrap intervals, reasoning-word counts and every figure function on small hand-made tables."""
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest

from synergy.analysis import bootstrap_mean_ci, count_words, level_gains, reasoning_word_counts
from synergy.report import figures as F

LEVELS = ["L1", "L2", "L3", "L4", "L5"]


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_of_a_constant_sample_has_zero_width():
    assert bootstrap_mean_ci([2.5] * 7, resamples=200) == (2.5, 2.5, 2.5)


def test_bootstrap_interval_of_a_coin_sample_matches_the_normal_approximation():
    x = np.array([0.0, 1.0] * 200)   # mean 0.5, standard error 0.5 / sqrt(400) = 0.025
    mean, low, high = bootstrap_mean_ci(x, resamples=4000, confidence=0.95, seed=1)
    assert mean == 0.5
    assert low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)
    narrow = bootstrap_mean_ci(x, resamples=4000, confidence=0.5, seed=1)
    assert low < narrow[1] < narrow[2] < high


def test_bootstrap_is_reproducible_and_checks_its_input():
    x = np.arange(10.0)
    assert bootstrap_mean_ci(x, seed=3) == bootstrap_mean_ci(x, seed=3)
    assert bootstrap_mean_ci(x, seed=3) != bootstrap_mean_ci(x, seed=4)
    assert all(np.isnan(bootstrap_mean_ci([])))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci(x, confidence=1.0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci([1.0, float("nan")])


def _evals():
    """Arm a solves q1 (L1) 2/2 and q2 (L5) 1/2; base solves q1 1/2 and q2 0/2."""
    rows = []
    for arm, q, correct in [("a", "q1", [1, 1]), ("a", "q2", [1, 0]), ("base", "q1", [1, 0]), ("base", "q2", [0, 0])]:
        for k, c in enumerate(correct):
            rows.append({"arm": arm, "bench": "x", "id": q, "sample": k, "correct": bool(c), "num_tokens": 10,
                         "truncated": False, "response": ""})
    return pl.DataFrame(rows)


LEVEL_TABLE = pl.DataFrame({"bench": ["x", "x"], "id": ["q1", "q2"], "level": ["L1", "L5"]})


def test_level_gains_are_paired_per_question_and_list_every_level():
    t = level_gains(_evals(), LEVEL_TABLE, [("a", "base")], resamples=100)
    rows = {r["level"]: r for r in t.iter_rows(named=True)}
    assert list(rows) == LEVELS
    assert rows["L1"]["gain"] == pytest.approx(50.0) and rows["L5"]["gain"] == pytest.approx(50.0)
    assert rows["L1"]["accuracy"] == 100.0 and rows["L1"]["reference_accuracy"] == 50.0
    assert rows["L1"]["ci_low"] == rows["L1"]["ci_high"] == pytest.approx(50.0)  # one question: no spread
    assert rows["L3"]["questions"] == 0 and rows["L3"]["gain"] is None


def test_level_gains_name_a_question_only_one_arm_answered():
    ev = _evals().filter(~((pl.col("arm") == "base") & (pl.col("id") == "q2")))
    with pytest.raises(ValueError, match="x/q2 has no samples of 'base'"):
        level_gains(ev, LEVEL_TABLE, [("a", "base")])
    with pytest.raises(ValueError, match="no evaluation samples of arm 'zzz'"):
        level_gains(_evals(), LEVEL_TABLE, [("a", "zzz")])


# --------------------------------------------------------------------------- reasoning words

TEXT = ("Wait, let me check. Hmm, wait... I double-checked it. Alternatively, a mistake? "
        "However: nowhere awaited checks; WAIT. Let me verify.")


def test_words_count_where_a_word_starts_in_any_case():
    got = count_words([TEXT, None, "no reasoning here"], ["wait", "check", "alternative", "however", "mistake",
                                                          "verify", "hmm", "let me"])
    # "awaited" and "nowhere" do not count; "double-checked", "checks", "Alternatively" and "WAIT" do
    assert got == {"wait": 3, "check": 3, "alternative": 1, "however": 1, "mistake": 1, "verify": 1, "hmm": 1,
                   "let me": 2}


def test_word_table_is_per_arm_and_per_thousand_responses():
    ev = pl.DataFrame({"arm": ["s", "s", "r", "r"], "bench": ["x", "y", "x", "x"],
                       "response": ["Wait, wait.", "wait", "fine", "Check it"]})
    t = reasoning_word_counts(ev, ["s", "r"], ["wait", "check"], benches=["x"])
    got = {(r["arm"], r["word"]): (r["count"], r["responses"], r["per_1k"]) for r in t.iter_rows(named=True)}
    assert got == {("s", "wait"): (2, 1, 2000.0), ("s", "check"): (0, 1, 0.0),
                   ("r", "wait"): (0, 2, 0.0), ("r", "check"): (1, 2, 500.0)}
    with pytest.raises(ValueError, match="no responses of arm 'r'"):
        reasoning_word_counts(ev, ["r"], ["wait"], benches=["y"])


# --------------------------------------------------------------------------- figures on hand-made tables


def _gains():
    rows = []
    for arm, ref in [("sft", "base"), ("rl", "base"), ("rl", "rl-noeasy")]:
        for b in ["b1", "b2"]:
            for i, lv in enumerate(LEVELS):
                g = (i - 2) * (3 if arm == "sft" else 1)
                rows.append({"arm": arm, "reference": ref, "bench": b, "level": lv, "questions": 10, "accuracy": 50 + g,
                             "reference_accuracy": 50.0, "gain": float(g), "ci_low": g - 2.0, "ci_high": g + 2.0})
    return pd.DataFrame(rows)


def _levels():
    rows = []
    for arm, length in [("base", 6.0), ("sft", 150.0), ("rl", 18.0)]:
        for b in ["b1", "b2"]:
            for i, lv in enumerate(LEVELS):
                rows.append({"arm": arm, "bench": b, "level": lv, "questions": 10 - i, "accuracy": 80.0 - 15 * i,
                             "length": length * (1 + 0.1 * i)})
    return pd.DataFrame(rows)


def _note(fig) -> str:
    return " ".join(t.get_text() for t in fig.texts if t.get_gid() == "absent-note")


def _legend_labels(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


def test_level_gain_draws_a_panel_per_benchmark_and_names_absent_arms(tmp_path):
    path = tmp_path / "fig1.pdf"
    fig = F.level_gain(_gains(), ["sft", "rl", "twostage"], path, reference="base", benches=["b2", "b1"],
                       caption="Fig. 1")
    assert path.stat().st_size > 1000 and path.read_bytes().startswith(b"%PDF")
    axes = _data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["b2", "b1"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == LEVELS
    assert axes[0].get_ylabel() == "gain over base (points)"
    assert "twostage" in _note(fig) and "sft" not in _note(fig)
    assert _legend_labels(fig) == ["sft", "rl"]
    # the error bars span the bootstrap interval: sft at L1 is -6 in [-8, -4]
    bars = [c for c in axes[1].collections if len(c.get_segments()) == 5]
    assert any(np.allclose(seg[:, 1], [-8.0, -4.0]) for c in bars for seg in c.get_segments())


def test_level_gain_without_any_requested_arm_says_so(tmp_path):
    fig = F.level_gain(_gains(), ["mixing"], tmp_path / "f.pdf", reference="base")
    assert "mixing" in _note(fig)
    assert any("no per-level gains" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_length_by_level_is_log_scaled_per_benchmark(tmp_path):
    fig = F.length_by_level(_levels(), ["base", "sft", "rl", "mixing"], tmp_path / "f2.pdf")
    axes = _data_axes(fig)
    assert len(axes) == 2 and all(ax.get_yscale() == "log" for ax in axes)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == LEVELS
    sft = [ln for ln in axes[0].get_lines() if ln.get_label() == "sft"][0]
    assert np.allclose(sft.get_ydata(), [150, 165, 180, 195, 210])
    assert "mixing" in _note(fig)


def test_accuracy_vs_length_weights_levels_by_questions(tmp_path):
    fig = F.accuracy_vs_length(_levels(), ["base", "sft"], tmp_path / "f3.pdf")
    axes = _data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["b1", "b2", "average over benchmarks"]
    assert axes[0].get_xlabel() == "mean response length (tokens)" and axes[0].get_ylabel() == "accuracy (%)"
    base = [ln for ln in axes[0].get_lines() if ln.get_label() == "base"][0]
    q = np.array([10, 9, 8, 7, 6])
    assert base.get_ydata()[0] == pytest.approx((q * (80 - 15 * np.arange(5))).sum() / q.sum())
    assert _note(fig) == ""


def _log(n, reward, **extra):
    d = {"step": np.arange(1, n + 1), "reward": np.full(n, reward), "entropy": np.linspace(1, 0.5, n),
         "response_length": np.full(n, 20.0), "clip_ratio": np.zeros(n)}
    d.update(extra)
    return pd.DataFrame(d)


def test_training_dynamics_has_the_four_metrics_and_hybrid_extras(tmp_path):
    fig = F.training_dynamics({"rl": _log(5, 0.4), "rl-nokl": _log(5, 0.2)}, ["rl", "rl-nokl"], tmp_path / "f4.pdf")
    axes = _data_axes(fig)
    assert [ax.get_ylabel() for ax in axes] == [lbl for _, lbl in F.DYNAMICS]
    assert all(ax.get_xlabel() == "training step" for ax in axes)
    assert _legend_labels(fig) == ["rl", "rl-nokl"]
    fig = F.training_dynamics({"rl": _log(5, 0.4), "progressive": _log(5, 0.3, prefix_fraction=np.linspace(1, 0, 5))},
                              ["rl", "progressive", "interleaved"], tmp_path / "f13.pdf")
    assert len(_data_axes(fig)) == 5 and _data_axes(fig)[-1].get_ylabel() == "trace prefix share"
    assert "interleaved" in _note(fig)


def test_easy_gap_draws_bars_with_intervals(tmp_path):
    fig = F.easy_gap(_gains(), ["rl", "rl-noeasy"], tmp_path / "f5.pdf")
    axes = _data_axes(fig)
    assert len(axes) == 2 and axes[0].get_ylabel() == "rl − rl-noeasy (points)"
    assert [p.get_height() for p in axes[0].patches] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    fig = F.easy_gap(_gains(), ["rl", "other"], tmp_path / "f5b.pdf")
    assert "other" in _note(fig)
    with pytest.raises(ValueError, match="two arms"):
        F.easy_gap(_gains(), ["rl"], None)


def test_reasoning_words_bars_per_arm_and_word(tmp_path):
    words = pd.DataFrame([{"arm": a, "word": w, "count": c, "responses": 100, "per_1k": c * 10.0}
                          for a, counts in [("base", [0, 1]), ("sft", [50, 9])] for w, c in zip(["wait", "check"], counts)])
    fig = F.reasoning_words(words, ["base", "sft", "rl"], tmp_path / "f10.pdf")
    ax = _data_axes(fig)[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylabel() == "occurrences per 1,000 responses"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["wait", "check"]
    assert sorted(p.get_height() for p in ax.patches) == [0.0, 10.0, 90.0, 500.0]
    assert "rl" in _note(fig) and _legend_labels(fig) == ["base (100 responses)", "sft (100 responses)"]


def test_merging_plots_gain_against_ratio_per_method(tmp_path):
    rows = []
    for m in ["linear", "ties"]:
        for r in [0.0, 0.5, 1.0]:
            for b in ["b1", "avg"]:
                acc = None if (m, r) == ("ties", 0.5) else 50 + 10 * r
                rows.append({"method": m, "sft_ratio": r, "arm": f"merge-{m}-{r:g}", "bench": b, "accuracy": acc,
                             "base_accuracy": 50.0, "gain": None if acc is None else acc - 50})
    fig = F.merging(pd.DataFrame(rows), tmp_path / "f14.pdf")
    axes = _data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["b1", "average over benchmarks"]
    assert axes[0].get_xlabel().startswith("SFT model's weight")
    assert "merge-ties-0.5" in _note(fig) and _legend_labels(fig) == ["linear", "ties"]
    fig = F.merging(None, tmp_path / "none.pdf", note="no merging section")
    assert "no merging section" in _note(fig) and (tmp_path / "none.pdf").stat().st_size > 0


def test_draw_reads_the_files_a_rule_hands_it(tmp_path):
    _gains().to_csv(tmp_path / "gains.csv", index=False)
    _log(4, 0.5).to_parquet(tmp_path / "sft-s1.1-r1.parquet")
    spec = {"kind": "level_gain", "arms": ["sft"], "reference": "base", "caption": "c", "note": ""}
    fig = F.draw(spec, F.read_inputs("level_gain", {"gains": str(tmp_path / "gains.csv")}), tmp_path / "a.pdf")
    assert fig._suptitle.get_text() == "c" and (tmp_path / "a.pdf").exists()
    data = F.read_inputs("dynamics", {"logs": [str(tmp_path / "sft-s1.1-r1.parquet")]})
    assert list(data["logs"]) == ["sft-s1.1-r1"]
    with pytest.raises(KeyError, match="unknown figure kind"):
        F.draw({"kind": "pie"}, {})


def test_report_modules_never_import_torch():
    code = ("import sys, synergy.report.figures, synergy.report.pdf, synergy.report.targets, "
            "synergy.report.study_tables, synergy.analysis; "
            "bad = [m for m in ('torch', 'transformers', 'snakemake') if m in sys.modules]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_routing_sweep_marks_the_threshold_used_and_names_absent_arms(tmp_path):
    rows = [{"arm": "routed", "fast": "rl", "slow": "sft", "split": split, "threshold": t, "accuracy": acc + t,
             "tokens_per_question": 10 + 100 * t, "percent_to_slow": 100 * t, "chosen": t == 0.5}
            for split, acc in (("tune set tune", 30.0), ("benchmarks", 31.0)) for t in (0.0, 0.5, 1.0)]
    fig = F.draw({"kind": "routing", "arms": ["routed", "routed2"], "caption": "c"}, {"sweep": pd.DataFrame(rows)},
                 tmp_path / "routing_sweep.pdf")
    acc, tok = fig.axes[:2]
    circled = [line for line in acc.lines if line.get_marker() == "o" and line.get_linestyle() == "None"]
    assert [list(line.get_xdata()) for line in circled] == [[0.5], [0.5]]  # one per split
    assert (tmp_path / "routing_sweep.pdf").read_bytes().startswith(b"%PDF")
    note = [t.get_text() for t in fig.texts if "Absent" in t.get_text()]
    assert note and "routed2" in note[0]
