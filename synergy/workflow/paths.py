"""The path schema of the study (README "Path schema"): every file a rule reads or writes, as a pattern.

Wildcards: ``{bench}`` a benchmark, ``{set}`` a training set, ``{arm}`` a trained (or merged) model,
``{table}`` / ``{figure}`` a table or figure name, ``{shard}`` one job of a sharded generation stage.
"""

from __future__ import annotations

BENCH_PATH = "results/data/bench/{bench}.parquet"
TRAIN_PATH = "results/data/train/{set}.parquet"
BASE_MODEL_DIR = "results/models/base"
SAMPLES_PATH = "results/difficulty/{bench}.samples.parquet"
LEVELS_PATH = "results/difficulty/levels.parquet"
TABLE_PATH = "results/tables/{table}.csv"
MODEL_DIR = "results/models/{arm}"
TRAIN_LOG = "results/train_logs/{arm}.parquet"
TRAIN_STATE = "results/train_state/{arm}"
EVAL_PATH = "results/eval/{arm}/{bench}.parquet"
TRAIN_SAMPLES_PATH = "results/difficulty/train/{set}/{rollout}.samples.parquet"  # {rollout}: workflow.inputs.rollout_key
MIXING_PATH = "results/data/mixing/{arm}.parquet"
FIGURE_PATH = "results/figures/{figure}.pdf"
REPORT_PATH = "results/figures/all.pdf"

# Sharded generation (synergy/shards.py): the paths of one shard's job; sharding.<stage> = 1 keeps one job.
SHARD_PATTERNS = {
    "difficulty": {"output": "results/difficulty/shards/{bench}/{shard}.samples.parquet",
                   "log": "logs/sample_difficulty/{bench}/{shard}.log",
                   "benchmark": "results/benchmarks/sample_difficulty/{bench}/{shard}.tsv"},
    "evaluation": {"output": "results/eval/shards/{arm}/{bench}/{shard}.parquet",
                   "log": "logs/evaluate/{arm}/{bench}/{shard}.log",
                   "benchmark": "results/benchmarks/evaluate/{arm}/{bench}/{shard}.tsv"},
}


UNSHARDED_PATTERNS = {
    "difficulty": {"output": "results/difficulty/{bench}.samples.parquet",
                   "log": "logs/sample_difficulty/{bench}.log",
                   "benchmark": "results/benchmarks/sample_difficulty/{bench}.tsv"},
    "evaluation": {"output": "results/eval/{arm}/{bench}.parquet",
                   "log": "logs/evaluate/{arm}/{bench}.log",
                   "benchmark": "results/benchmarks/evaluate/{arm}/{bench}.tsv"},
}


# evaluation.per_job: arm -- one job per arm writes every benchmark's UNSHARDED output
EVAL_PER_ARM_PATTERNS = {"log": "logs/evaluate/{arm}.log", "benchmark": "results/benchmarks/evaluate/{arm}.tsv"}


def table_csv(name: str) -> str:
    return TABLE_PATH.format(table=name)


def table_md(name: str) -> str:
    return table_csv(name)[: -len(".csv")] + ".md"


def level_table_paths() -> list[str]:
    return [TABLE_PATH.format(table="level_counts"), "results/tables/level_counts.md"]
