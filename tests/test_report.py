"""The report: figure targets and inputs per study config, table layouts, and all.pdf from hand-made inputs."""
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from synergy.config import ConfigError, load_config, load_config_file
from synergy.report import targets as T
from synergy.report.pdf import build_report, code_version, table_pages
from synergy.workflow import has_routed, study_figures
from synergy.report.study_tables import md_title, report_layout

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
LEVELS = ["L1", "L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def study():
    return load_config_file(ROOT / "config/config.yaml")


@pytest.fixture(scope="module")
def smoke():
    return load_config_file(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml")


def test_figure_targets_are_every_figure_table5_and_the_report(study):
    targets = T.figure_targets(study)
    assert targets[-1] == "results/embedded/figures/all.pdf"
    figures = [t for t in targets if t.startswith("results/embedded/figures/") and not t.endswith("/all.pdf")]
    assert figures == [f"results/embedded/figures/{f}.pdf" for f in T.FIGURES]
    assert "results/embedded/tables/table5_reasoning_words.csv" in targets
    assert "results/embedded/tables/cost.csv" in targets and "cost_accuracy" in T.FIGURES  # docs/cost.md


def test_the_cost_page_and_figure_come_last_before_the_appendix(study):
    names = [i["name"] for i in T.report_items(study)]
    assert names.index("cost") == names.index("merge_grid") + 1 and names.index("cost_accuracy") == names.index("cost") + 1
    assert T.figure_arms(study, "cost_accuracy") == study.arm_names  # every arm
    assert T.figure_inputs(study, "cost_accuracy") == {"cost": "results/embedded/tables/cost.csv",
                                                        "levels": "results/embedded/tables/level_accuracy.csv"}


def test_schema_lists_exactly_the_figures_of_the_registry():
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    assert list(schema["properties"]["report"]["properties"]["figures"]["properties"]) == list(T.FIGURES)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert list(config["report"]["figures"]) == list(T.FIGURES)


def test_absent_arms_are_not_inputs(smoke):
    # the smoke study has base, sft-eureka, rl-noeasy (grpo), ...: no rl, rl-nokl, twostage
    assert T.present_arms(smoke, "fig4_kl_dynamics") == []
    assert T.figure_inputs(smoke, "fig4_kl_dynamics") == {"logs": []}
    assert T.present_arms(smoke, "fig1_level_gain") == [a for a in T.FIGURES["fig1_level_gain"].arms
                                                        if a in smoke.arm_names]
    assert all(ref == "base" for _, ref in T.gain_pairs(smoke))      # no (rl, rl-noeasy): rl is absent
    benches, note = T.word_benches(smoke)
    assert benches == smoke.bench_names and "synth-arith" in note


def test_gain_pairs_and_word_inputs_of_the_embedded_study(study):
    pairs = T.gain_pairs(study)
    assert ("rl", "rl-noeasy") in pairs and ("sft-s1-gemini", "base") in pairs
    assert len(pairs) == len(set(pairs))
    assert T.word_benches(study) == (["synth-arith"], "")
    assert all(p.endswith("/synth-arith.parquet") for p in T.word_inputs(study))


def test_report_items_follow_the_paper_order(study):
    names = [i["name"] for i in T.report_items(study)]
    assert names[:4] == ["findings", "level_counts", "fig1_level_gain", "table1_sft_data"]   # findings: right after the title
    assert names.index("table2_kl") < names.index("fig4_kl_dynamics") < names.index("fig14_merging")
    assert names[-2:] == ["level_accuracy", "level_gain"]
    assert set(T.FIGURES) <= set(names)


def _raw():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_report_config_errors_name_the_key():
    raw = _raw()
    raw["report"]["figures"]["fig99_pie"] = ["rl"]
    with pytest.raises(ConfigError, match="unknown config key 'report.figures.fig99_pie'"):
        load_config(raw)
    raw = _raw()
    raw["report"]["figures"]["fig5_easy_gap"] = ["rl"]
    with pytest.raises(ConfigError, match="report.figures.fig5_easy_gap.*exactly two arms"):
        T.report_config(load_config(raw))
    raw = _raw()
    del raw["report"]
    cfg = T.report_config(load_config(raw))
    assert cfg.bootstrap.resamples == 2000 and cfg.reasoning_words.benches == ()


def test_config_hash_is_stable_and_changes_with_the_config():
    a, b = _raw(), _raw()
    assert T.config_hash(a) == T.config_hash(b)
    b["study"]["seed"] = 1
    assert T.config_hash(a) != T.config_hash(b)


def test_long_tables_get_their_wide_layout():
    long = pd.DataFrame([{"arm": a, "word": w, "count": 1, "responses": 10, "per_1k": v}
                         for a, w, v in [("b", "wait", 0.0), ("b", "check", 1.0), ("s", "wait", 5.0), ("s", "check", 2.0)]])
    wide, note = report_layout("table5_reasoning_words", long)
    assert list(wide.columns) == ["word", "b", "s"] and wide["word"].tolist() == ["wait", "check"]
    assert wide.loc[1, "s"] == 2.0 and "1,000" in note
    gains = pd.DataFrame([{"arm": "rl", "reference": r, "bench": "x", "level": lv, "gain": 1.0, "ci_low": -1.0,
                           "ci_high": 3.0} for r in ["base", "rl-noeasy"] for lv in reversed(LEVELS)])
    wide, _ = report_layout("level_gain", gains)
    assert list(wide.columns) == ["arm", "reference", "bench", *LEVELS] and len(wide) == 2   # no invented rows
    assert wide.loc[0, "L1"] == "+1.0 [-1.0, +3.0]"
    assert report_layout("table1_sft_data", gains)[0] is gains
    levels = pd.DataFrame([{"arm": "rl", "bench": "x", "level": lv, "questions": 4, "accuracy": 62.5, "length": 18.4}
                           for lv in LEVELS[1:]])  # no L1 question on this benchmark
    wide, note = report_layout("level_accuracy", levels)
    assert list(wide.columns) == ["arm", "bench", *LEVELS[1:]] and wide.loc[0, "L2"] == "62.5 (18)"
    assert "response length" in note


def test_table_pages_split_long_tables():
    df = pd.DataFrame({"arm": [f"a{i}" for i in range(30)], "acc": [float(i) for i in range(30)]})
    pages = table_pages(df, "Caption", rows_per_page=12)
    assert len(pages) == 3
    assert pages[0].texts[0].get_text() == "Caption (1/3)"


def _write_inputs(tmp: Path) -> list[dict]:
    tables = tmp / "tables"
    tables.mkdir()
    t1 = pd.DataFrame({"arm": ["base", "rl"], "x": [30.0, 35.5], "Avg": [30.0, 35.5]})
    t1.to_csv(tables / "table1.csv", index=False)
    (tables / "table1.md").write_text("# Table 1: accuracy (%)\n\n...")
    levels = pd.DataFrame([{"arm": a, "bench": b, "level": lv, "questions": 5, "accuracy": 40.0, "length": 9.0}
                           for a in ["base", "rl"] for b in [f"b{i}" for i in range(20)] for lv in LEVELS])
    levels.to_csv(tables / "level_accuracy.csv", index=False)   # 40 rows in its wide layout: 2 pages
    (tables / "level_accuracy.md").write_text("# Accuracy by level\n")
    return [
        {"type": "table", "name": "table1", "csv": str(tables / "table1.csv"), "md": str(tables / "table1.md")},
        {"type": "figure", "name": "fig2_length", "inputs": {"levels": str(tables / "level_accuracy.csv")},
         "spec": {"name": "fig2_length", "kind": "length", "caption": "Fig. 2", "arms": ["base", "rl", "sft"],
                  "benches": None, "reference": "base", "note": ""}},
        {"type": "figure", "name": "fig14_merging", "inputs": {},
         "spec": {"name": "fig14_merging", "kind": "merging", "caption": "Fig. 14", "arms": [], "note": "no merging"}},
        {"type": "table", "name": "level_accuracy", "csv": str(tables / "level_accuracy.csv"),
         "md": str(tables / "level_accuracy.md")},
    ]


def test_report_has_a_title_page_then_every_table_and_figure(tmp_path):
    items = _write_inputs(tmp_path)
    info = {"study": "hand", "base_model": "m", "benchmarks": ["x"], "arms": ["base", "rl"], "config_hash": "abc"}
    out = tmp_path / "all.pdf"
    pages = build_report(out, info, items)
    assert pages == 1 + 1 + 1 + 1 + 2
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", data)) == pages
    assert md_title(items[0]["md"], "x") == "Table 1: accuracy (%)"


def test_report_names_a_missing_table(tmp_path):
    items = [{"type": "table", "name": "table9", "csv": str(tmp_path / "t9.csv"), "md": str(tmp_path / "t9.md")}]
    with pytest.raises(FileNotFoundError, match="table9.*t9.csv"):
        build_report(tmp_path / "all.pdf", {"study": "s"}, items)


def test_code_version_outside_a_checkout_is_unknown(tmp_path):
    assert code_version(tmp_path) == "unknown"
    assert code_version(ROOT) != "unknown"


def test_dry_run_of_the_report_plans_only_light_local_jobs_on_top_of_the_tables():
    out = subprocess.run([SNAKEMAKE, "results/smoke/figures/all.pdf", "-n", "--forceall", "--quiet", "rules",
                          "--configfile", "config/smoke.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M)}
    smoke = load_config_file(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml")
    assert not has_routed(smoke) and "routing_sweep" not in study_figures(smoke)  # drawn only with a routed arm
    assert counts["make_figure"] == len(T.FIGURES) - 1 == len(study_figures(smoke)) and counts["make_report"] == 1
    assert counts["tabulate_level_gain"] == 1 and counts["tabulate_reasoning_words"] == 1


def test_markdown_prints_merge_ratios_exactly_and_rounds_measurements():
    import polars as pl

    from synergy.report.tables import to_markdown

    md = to_markdown(pl.DataFrame({"sft_ratio": [0.25, 0.75, 1.0], "accuracy": [31.26, 12.74, 20.0]}))
    rows = md.splitlines()[2:]
    assert rows == ["| 0.25 | 31.3 |", "| 0.75 | 12.7 |", "| 1 | 20.0 |"]
