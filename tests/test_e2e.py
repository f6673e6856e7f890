"""End-to-end tier: the smoke study through every rule with the real CLI, in a scratch directory."""
import subprocess

import polars as pl
import pytest

import slurmci
from synergy.data.suite import question_keys
from synergy.io import read_rows

TARGET = "results/smoke/tables/level_counts.csv"
ARMS = ["base", "sft-eureka", "rl-noeasy", "progressive", "mixing", "merge-ties-0.5"]  # config/smoke.yaml
BENCHES = ["synth-count", "synth-compare"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The session's one smoke run (tests/slurmci.py): through the real Slurm test cluster with
    profiles/slurm-local when it is up or SYNERGY_SLURM_CI=1 (CI), else locally with profiles/local.
    tests/test_slurm.py checks that same run's Slurm jobs with sacct."""
    run = slurmci.smoke_run(tmp_path_factory)
    return run.wd, run.cmd


pytestmark = pytest.mark.slow


def test_level_table_covers_every_benchmark(smoke_run):
    wd, _ = smoke_run
    table = pl.read_csv(wd / TARGET)
    assert table.columns == ["bench", "L1", "L2", "L3", "L4", "L5", "total"]
    assert table["bench"].to_list() == [*BENCHES, "all"]
    assert table.filter(pl.col("bench") == "all")["total"].item() == 24
    assert (wd / "results/smoke/tables/level_counts.md").read_text().startswith("# Questions per benchmark")


def test_samples_keep_raw_text_and_grades(smoke_run):
    wd, _ = smoke_run
    samples = pl.read_parquet(wd / "results/smoke/difficulty/synth-compare.samples.parquet")
    assert {"id", "sample", "response", "num_tokens", "truncated", "extracted", "correct", "format_ok",
            "status"} <= set(samples.columns)
    assert samples.group_by("id").len()["len"].to_list() == [16] * 12
    assert samples["response"].str.len_chars().sum() > 0


def test_levels_match_samples(smoke_run):
    wd, _ = smoke_run
    levels = pl.read_parquet(wd / "results/smoke/difficulty/levels.parquet")
    samples = pl.concat([pl.read_parquet(p) for p in (wd / "results/smoke/difficulty").glob("*.samples.parquet")])
    passes = samples.group_by("id").agg(pl.col("correct").sum().alias("p"))
    joined = levels.join(passes, on="id")
    assert joined.height == 24 and (joined["passes"] == joined["p"]).all()
    assert set(levels["level"]) <= {"L1", "L2", "L3", "L4", "L5"}


def test_built_train_sets_are_disjoint_from_every_benchmark(smoke_run):
    wd, _ = smoke_run
    bench_keys = set().union(*(question_keys(read_rows(p)) for p in (wd / "results/smoke/data/bench").glob("*.parquet")))
    for path in (wd / "results/smoke/data/train").glob("*.parquet"):
        assert not question_keys(read_rows(path)) & bench_keys, path.name


def test_base_model_loads_with_the_auto_classes(smoke_run):
    wd, _ = smoke_run
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_dir = wd / "results/smoke/models/base"
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert "<|image_pad|>" in processor.tokenizer.get_vocab()
    assert not list(model_dir.glob("*.bin"))


def test_every_job_has_a_log_and_a_benchmark(smoke_run):
    wd, _ = smoke_run
    logs = sorted(p.parent.name for p in (wd / "logs/smoke").glob("*/*.log"))
    assert set(logs) == {"build_synthetic_benchmark", "build_synthetic_train_set", "build_base_model",
                         "sample_difficulty", "assign_levels", "tabulate_level_counts", "train_sft", "train_grpo",
                         "sample_train_pass_rates", "tabulate_arms", "build_mixing_set", "merge_models",
                         "tabulate_level_gain", "tabulate_reasoning_words", "check_findings", "make_figure", "make_report", "evaluate",
                         "tabulate_cost"}
    # evaluation.per_job: arm (config.yaml): one evaluate job, log and benchmark file per arm, all benchmarks in it
    assert sorted(p.stem for p in (wd / "logs/smoke/evaluate").glob("*.log")) == sorted(ARMS)
    assert sorted(p.stem for p in (wd / "results/smoke/benchmarks/evaluate").glob("*.tsv")) == sorted(ARMS)
    for arm in ARMS:
        log = (wd / f"logs/smoke/evaluate/{arm}.log").read_text()
        assert all(f"results/smoke/data/bench/{b}.parquet" in log for b in BENCHES)
    log = (wd / "logs/smoke/build_base_model/base.log").read_text()
    assert "pretraining done" in log


def test_rerun_has_nothing_to_do(smoke_run):
    wd, cmd = smoke_run
    out = subprocess.run([*cmd, "-n"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "Nothing to be done" in out.stdout + out.stderr


def test_every_table_has_every_arm_and_benchmark(smoke_run):
    wd, _ = smoke_run
    expected = {"table1_sft_data": ["base", "sft-eureka"], "table3_easy": ["base", "rl-noeasy"],
                "table6_synergy": ["base", "sft-eureka", "rl-noeasy", "progressive", "mixing", "merge-ties-0.5"]}
    for table, arms in expected.items():
        t = pl.read_csv(wd / f"results/smoke/tables/{table}.csv")
        assert t["arm"].to_list() == arms
        assert t.select(pl.col("Avg")).null_count().item() == 0
        assert (wd / f"results/smoke/tables/{table}.md").is_file()
    levels = pl.read_csv(wd / "results/smoke/tables/level_accuracy.csv")
    assert levels.height == len(ARMS) * len(BENCHES) * 5 and set(levels["level"]) == {"L1", "L2", "L3", "L4", "L5"}


def test_trained_arms_differ_from_base_and_log_their_steps(smoke_run):
    wd, _ = smoke_run
    from safetensors.torch import load_file

    base = load_file(wd / "results/smoke/models/base/model.safetensors")
    for arm in ["sft-eureka", "rl-noeasy", "progressive", "mixing"]:
        weights = load_file(wd / f"results/smoke/models/{arm}/model.safetensors")
        changed = [k for k in base if "visual" not in k and not (base[k] == weights[k]).all()]
        assert changed, f"{arm}: no language-model weight changed"
        assert all((base[k] == weights[k]).all() for k in base if "visual" in k), f"{arm}: vision tower changed"
        log = pl.read_parquet(wd / f"results/smoke/train_logs/{arm}.parquet")
        assert log.height > 0 and "step" in log.columns
    grpo_log = pl.read_parquet(wd / "results/smoke/train_logs/rl-noeasy.parquet")
    assert {"reward", "accuracy", "format_rate", "entropy", "response_length", "clip_ratio", "kl", "grad_norm", "lr",
            "groups_with_signal"} <= set(grpo_log.columns)
    assert not (wd / "results/smoke/train_state/rl-noeasy").exists()  # states are removed once the model is written


def test_evaluation_keeps_k_graded_samples_per_question(smoke_run):
    wd, _ = smoke_run
    ev = pl.read_parquet(wd / "results/smoke/eval/sft-eureka/synth-count.parquet")
    assert ev.group_by("id").len()["len"].to_list() == [2] * 12
    assert set(ev["arm"]) == {"sft-eureka"}


def test_combination_tables_and_artifacts(smoke_run):
    """Table 7, the merge grid, the mixing set's composition, the hybrid arm's columns (paper §3)."""
    import json

    wd, _ = smoke_run
    t7 = pl.read_csv(wd / "results/smoke/tables/table7_length.csv")
    assert t7.columns == ["arm", "bench", "accuracy", "length"]
    assert t7["bench"].to_list() == [*BENCHES, "avg"] * 2 and t7["length"].min() > 0
    grid = pl.read_csv(wd / "results/smoke/tables/merge_grid.csv")
    assert grid.columns == ["method", "sft_ratio", "arm", "bench", "accuracy", "base_accuracy", "gain"]
    assert grid["arm"].unique(maintain_order=True).to_list() == ["rl-noeasy", "merge-ties-0.5", "sft-eureka"]
    assert grid.height == 3 * 3 and grid["gain"].null_count() == 0
    comp = json.loads((wd / "results/smoke/data/mixing/mixing.json").read_text())
    mixed = read_rows(wd / "results/smoke/data/mixing/mixing.parquet")
    assert comp["rows"] == len(mixed) == comp["rows_rl_sample"] + comp["rows_trace"]
    assert comp["rows_trace"] == comp["never_solved"] and comp["questions"] == 32
    assert "training rows by origin" in (wd / "logs/smoke/train_sft/mixing.log").read_text()
    merged = json.loads((wd / "results/smoke/models/merge-ties-0.5/merge_summary.json").read_text())
    assert merged["method"] == "ties" and merged["sft_ratio"] == 0.5 and merged["tensors"] > 0
    prog = pl.read_parquet(wd / "results/smoke/train_logs/progressive.parquet")
    assert {"sft_questions", "sft_tokens", "sft_loss", "prefix_fraction"} <= set(prog.columns)
    assert prog["prefix_fraction"].to_list() == [1.0, 0.0]


def test_changing_figure_code_reruns_only_the_report(smoke_run):
    """A change of the drawing code re-runs the figure and report rules, never training or evaluation.

    The change is real (a line appended, then removed): Snakemake 9 compares an input newer than its
    outputs by checksum, so touching the file alone re-runs nothing, as it should.
    """
    import os
    import re
    from pathlib import Path

    wd, cmd = smoke_run
    code = Path(__file__).resolve().parent.parent / "synergy/report/figures.py"
    text, st = code.read_text(), code.stat()
    try:
        code.write_text(text + "\n# a style change\n")
        out = subprocess.run([*cmd, "-n", "--quiet", "rules"], capture_output=True, text=True)
    finally:
        code.write_text(text)
        os.utime(code, (st.st_atime, st.st_mtime))
    assert out.returncode == 0, out.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M) if k != "total"}
    assert counts.get("make_figure") == 13 and counts.get("make_report") == 1, counts
    assert set(counts) <= {"make_figure", "make_report", "all"}, counts


def test_snakemake_report_shows_every_figure_and_table(smoke_run, tmp_path):
    """``snakemake --report`` on the smoke study: every figure, table and all.pdf is in it, with its caption and
    its category (paper section)."""
    import zipfile

    from tiny_study import snakemake_cmd

    from synergy.config import load_config_file
    from synergy.workflow import study_figures

    wd, _ = smoke_run
    out = tmp_path / "report.zip"
    run = subprocess.run(snakemake_cmd(wd, "--report", str(out), configs=[slurmci.ROOT / "config/smoke.yaml"],
                                       base=False), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("report.html") for n in names), names[:20]
    smoke = load_config_file(slurmci.ROOT / "config/config.yaml", slurmci.ROOT / "config/smoke.yaml")
    for fig in study_figures(smoke):  # every figure the study draws (the routing sweep only with a routed arm)
        assert any(n.endswith(f"{fig}.pdf") for n in names), fig
    for table in ("level_counts", "table6_synergy", "level_gain", "findings", "table5_reasoning_words"):
        assert any(n.endswith(f"{table}.csv") for n in names), table
    assert any(n.endswith("all.pdf") for n in names)
    html = "".join(zipfile.ZipFile(out).read(n).decode(errors="replace") for n in names if n.endswith(".js")
                   or n.endswith(".html"))
    assert "Combining SFT and RL" in html and "level by level" in html  # categories by paper section
    assert "Table 6: accuracy" in html  # a table's caption


def test_cost_table_sums_the_benchmark_files_and_is_in_the_report(tmp_path_factory):
    """cost.csv (docs/cost.md): each arm's training, evaluation and shared stages equal its jobs' benchmark files
    (from sacct when the run went through Slurm); the mixing arm builds on its RL source, the pass-rate sampling
    and the mixing set; GPU-hours where config/smoke.yaml asks train_sft for a GPU; the cost page and figure in
    all.pdf."""
    from cost_check import benchmark_seconds, check_cost, report_pages

    run = slurmci.smoke_run(tmp_path_factory)
    root = run.wd / "results/smoke"
    table = check_cost(root, {"train_sft": 1}, slurm=run.slurm)
    wall = benchmark_seconds(root)
    mixing = table.filter(pl.col("arm") == "mixing").row(0, named=True)
    parts = ["build_mixing_set/mixing.tsv", "train_grpo/rl-noeasy.tsv",
             next(k for k in wall if k.startswith("sample_train_pass_rates/rl."))]
    if not run.slurm:
        assert mixing["builds_on_s"] == pytest.approx(sum(wall[k] for k in parts))
        sft = table.filter(pl.col("arm") == "sft-eureka").row(0, named=True)
        assert sft["own_gpu_hours"] == pytest.approx(wall["train_sft/sft-eureka.tsv"] / 3600)
    assert mixing["gpu_hours"] > 0  # its own SFT on a GPU
    pages = report_pages(run.wd, "smoke")
    assert any(p.startswith("Cost of every arm") for p in pages) and any(p.startswith("Average accuracy against") for p in pages)
