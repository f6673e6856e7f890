"""Pure helpers of the Snakemake workflow: config -> paths, seeds and targets (DESIGN.md §3).

Rules stay declarative; everything longer than a line lives here and is unit-tested
(tests/test_workflow.py). This module never imports snakemake or torch.
"""

from __future__ import annotations

import zlib

from synergy.config import SetSpec, StudyConfig

BENCH_PATH = "results/data/bench/{bench}.parquet"
TRAIN_PATH = "results/data/train/{set}.parquet"
BASE_MODEL_DIR = "results/models/base"
SAMPLES_PATH = "results/difficulty/{bench}.samples.parquet"
LEVELS_PATH = "results/difficulty/levels.parquet"
TABLE_PATH = "results/tables/{table}.csv"


def bench_spec(study: StudyConfig, bench: str) -> SetSpec:
    for spec in study.benchmarks:
        if spec.name == bench:
            return spec
    raise KeyError(f"no benchmark named {bench!r} in the study config (have {study.bench_names})")


def train_spec(study: StudyConfig, name: str) -> SetSpec:
    for spec in study.train_sets:
        if spec.name == name:
            return spec
    raise KeyError(f"no train set named {name!r} in the study config (have {study.train_set_names})")


def synthetic_bench_paths(study: StudyConfig) -> list[str]:
    """Benchmarks every synthetic training set must be disjoint from."""
    return [BENCH_PATH.format(bench=b.name) for b in study.benchmarks if b.loader == "synthetic"]


def train_templates(study: StudyConfig, spec: SetSpec) -> dict[str, float]:
    """A train set's template weights; ``all`` = every template any benchmark uses, equally weighted."""
    if spec.templates != "all":
        return dict(spec.templates)
    names = sorted({t for b in study.benchmarks if isinstance(b.templates, dict) for t in b.templates})
    return {t: 1.0 for t in names}


def derived_seed(seed: int, *names: str) -> int:
    """A seed for one job, stable when other benchmarks or arms are added or removed."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**31 - 1)


def tokenizer_corpus_paths(study: StudyConfig) -> list[str]:
    """Training sets whose text the tiny tokenizer is trained on (never the benchmarks)."""
    return [TRAIN_PATH.format(set=t.name) for t in study.train_sets]


def level_table_paths() -> list[str]:
    return [TABLE_PATH.format(table="level_counts"), "results/tables/level_counts.md"]


def final_targets(study: StudyConfig) -> list[str]:
    """What ``snakemake`` builds with no target: everything the study produces so far."""
    return level_table_paths()
