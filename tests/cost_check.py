"""Checks of a built study's cost table against its jobs' own benchmark files (tests/test_e2e.py, tests/test_cost.py)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl
import pytest

# Rules the cost table does not count (docs/cost.md §1): tables, figures, the report, the cost table itself.
NOT_COUNTED = ("tabulate_level_gain", "tabulate_reasoning_words", "check_findings", "make_figure", "make_report",
               "tabulate_cost", "tabulate_routing")
SHARED = ("build_synthetic_benchmark", "build_synthetic_train_set", "build_base_model", "sample_difficulty")
TRAIN = {"sft": "train_sft", "mixing": "train_sft", "grpo": "train_grpo", "merge": "merge_models"}


def benchmark_seconds(study_dir: Path) -> dict[str, float]:
    """``rule/name.tsv -> wall seconds`` of every benchmark file of a study."""
    out = {}
    for p in sorted((study_dir / "benchmarks").rglob("*.tsv")):
        with p.open() as f:
            out[p.relative_to(study_dir / "benchmarks").as_posix()] = float(list(csv.DictReader(f, delimiter="\t"))[-1]["s"])
    return out


def check_cost(study_dir: Path, gpus: dict[str, int], slurm: bool = False) -> pl.DataFrame:
    """cost.csv of a study (evaluation.per_job: arm) against its benchmark files: each arm's own training, its
    evaluation, the shared stages and the study's total; with Slurm, every number from sacct and at least the
    benchmark file's seconds (an allocation also starts Snakemake; sacct counts whole seconds)."""
    table = pl.read_csv(study_dir / "tables/cost.csv")
    wall = benchmark_seconds(study_dir)
    counted = {k: v for k, v in wall.items() if k.split("/")[0] not in NOT_COUNTED}
    shared = sum(v for k, v in counted.items() if k.split("/")[0] in SHARED)

    def same(got, want, jobs=1):
        if slurm:
            assert got >= want - jobs, (got, want)
        else:
            assert got == pytest.approx(want, abs=1e-6), (got, want)

    for row in table.filter(~pl.col("arm").str.starts_with("study")).iter_rows(named=True):
        arm, kind = row["arm"], row["kind"]
        train = 0.0 if kind == "base" else wall[f"{TRAIN[kind]}/{arm}.tsv"]
        same(row["train_s"], train)
        same(row["evaluation_s"], wall[f"evaluate/{arm}.tsv"])
        assert row["total_s"] == pytest.approx(row["train_s"] + row["builds_on_s"] + row["evaluation_s"] + row["shared_s"])
        if kind != "base" and not slurm:
            assert row["own_gpu_hours"] >= train * gpus.get(TRAIN[kind], 0) / 3600 - 1e-9
        assert row["source"] == ("sacct" if slurm else "benchmark"), row
    study = table.filter(pl.col("arm").str.starts_with("study")).row(0, named=True)
    assert study["jobs"] == len(counted)
    same(study["shared_s"], shared, jobs=sum(k.split("/")[0] in SHARED for k in counted))
    same(study["total_s"], sum(counted.values()), jobs=len(counted))
    return table


def report_pages(workdir: Path, study: str) -> list[str]:
    """The page titles of a study's all.pdf, from its job log (one line a page)."""
    log = (workdir / f"logs/{study}/make_report/all.log").read_text()
    return re.findall(r"page \d+: (.*)", log)
