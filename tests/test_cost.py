"""The cost table (docs/cost.md): the job graph behind each arm, Slurm's accounting parsed, and on a small built
study, cost.csv's sums equal to the jobs' own benchmark files and the cost page in all.pdf."""
from __future__ import annotations

from pathlib import Path

import pytest

from synergy.config import load_config_file
from synergy.report.cost import parse_sacct, read_benchmark, sacct_match
from synergy.workflow.cost import cost_graph, cost_inputs

ROOT = Path(__file__).resolve().parent.parent


def _stages(graph: dict, arm: str) -> dict[str, list[str]]:
    a = next(x for x in graph["arms"] if x["arm"] == arm)
    return {s: [Path(p).relative_to("results/smoke/benchmarks").as_posix() for _, p in a[s]]
            for s in ("train", "builds_on", "evaluation")}


def test_each_arm_counts_what_it_builds_on():
    graph = cost_graph(load_config_file(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml"))
    assert _stages(graph, "base") == {"train": [], "builds_on": [], "evaluation": ["evaluate/base.tsv"]}
    mixing = _stages(graph, "mixing")
    assert mixing["train"] == ["train_sft/mixing.tsv"]
    # the mixing set, its RL source's training and the base rollouts that source drops easy questions by
    assert set(mixing["builds_on"]) == {"build_mixing_set/mixing.tsv", "train_grpo/rl-noeasy.tsv",
                                        next(p for p in mixing["builds_on"] if p.startswith("sample_train_pass_rates/rl."))}
    merge = _stages(graph, "merge-ties-0.5")
    assert merge["train"] == ["merge_models/merge-ties-0.5.tsv"]
    assert {"train_sft/sft-eureka.tsv", "train_grpo/rl-noeasy.tsv"} <= set(merge["builds_on"])
    shared = [Path(p).parts[3] for _, p in graph["shared"]]
    assert shared.count("sample_difficulty") == 2 and "build_base_model" in shared
    assert graph["gpus"]["train_sft"] == 1 and graph["gpus"]["train_grpo"] == 0  # config/smoke.yaml resources


def test_paper_study_counts_every_shard_and_no_tiny_model():
    study = load_config_file(ROOT / "config/config.yaml", ROOT / "config/paper.yaml")
    graph, paths = cost_graph(study), cost_inputs(study)
    assert not any("build_base_model" in p for p in paths)
    evals = _stages_any(graph, "rl")["evaluation"]
    assert len(evals) == len(study.bench_names) * study.sharding.evaluation
    assert graph["gpus"]["train_grpo"] == 8


def _stages_any(graph: dict, arm: str) -> dict:
    return next(x for x in graph["arms"] if x["arm"] == arm)


SACCT = """\
41|rule_train_sft_wildcards_smoke_sft-eureka|/scratch/wd|COMPLETED|120|01:30.500||billing=1,cpu=1,gres/gpu=1,mem=2000M,node=1|2026-12-03T10:02:00
41.batch||||120|01:30.500|204800K||2026-12-03T10:02:00
41.0||||118|01:20.000|512000K||2026-12-03T10:02:00
42|rule_train_sft_wildcards_smoke_sft-eureka|/other/wd|COMPLETED|99|00:10||cpu=1,gres/gpu:fake=2,node=1|2026-12-03T11:00:00
43|rule_sample_train_pass_rates_wildcards_smoke_rl_c76d7320|/scratch/wd|COMPLETED|1-00:00:02|1-02:03:04||cpu=1|2026-12-03T10:01:00
44|rule_build_base_model_wildcards_smoke|/scratch/wd|FAILED|5|00:01||cpu=1|2026-12-03T09:00:00
"""


def test_sacct_allocations_fold_their_steps_and_match_by_comment_and_workdir():
    recs = {r["job"]: r for r in parse_sacct(SACCT.replace("|1-00:00:02|", "|86402|"))}
    assert recs["41"]["rss_mb"] == pytest.approx(500.0) and recs["41"]["gpus"] == 1 and recs["41"]["cpu_s"] == 90.5
    assert recs["42"]["gpus"] == 2 and recs["43"]["cpu_s"] == 86400 + 2 * 3600 + 3 * 60 + 4
    records = list(recs.values())
    hit = sacct_match(records, "train_sft", "results/smoke/benchmarks/train_sft/sft-eureka.tsv", "smoke", "/scratch/wd")
    assert hit["job"] == "41"  # not job 42: another working directory
    hit = sacct_match(records, "sample_train_pass_rates", "results/smoke/benchmarks/sample_train_pass_rates/rl.c76d7320.tsv",
                      "smoke", "/scratch/wd")
    assert hit["job"] == "43"
    assert sacct_match(records, "build_base_model", "results/smoke/benchmarks/build_base_model/base.tsv", "smoke",
                       "/scratch/wd") is None  # failed: not counted


def test_a_bad_sacct_line_and_a_missing_benchmark_file_are_named(tmp_path):
    with pytest.raises(ValueError, match="expected 9"):
        parse_sacct("1|2|3\n")
    with pytest.raises(FileNotFoundError, match="benchmark file missing"):
        read_benchmark(tmp_path / "nope.tsv")
    (tmp_path / "na.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n0.5\t0:00:00\tNA\tNA\n")
    job = read_benchmark(tmp_path / "na.tsv", gpus=2)
    assert (job.wall_s, job.cpu_s, job.measured) == (0.5, 0.0, False) and job.gpu_hours == pytest.approx(1 / 3600)


# The assertions on a built study (cost.csv against the benchmark files, the cost page in all.pdf) run on the smoke
# study in tests/test_e2e.py (tests/cost_check.py), so that no extra study runs in CI.
