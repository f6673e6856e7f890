"""The path schema of the study (README "Path schema"): every file a rule reads or writes, as a pattern.

Every study has its own folders, named by ``study.name``: ``results/{study}/`` and ``logs/{study}/`` (a
second study never touches the first one's files; ``synergy.workflow.record`` refuses a second set of settings
under one name). ``{study}`` is a wildcard of every rule, constrained to the study's name.

Wildcards: ``{bench}`` a benchmark, ``{set}`` a training set, ``{arm}`` a trained (or merged) model,
``{table}`` / ``{figure}`` a table or figure name, ``{shard}`` one job of a sharded generation stage.
"""

from __future__ import annotations

BENCH_PATH = "results/{study}/data/bench/{bench}.parquet"
TRAIN_PATH = "results/{study}/data/train/{set}.parquet"
BASE_MODEL_DIR = "results/{study}/models/base"
SAMPLES_PATH = "results/{study}/difficulty/{bench}.samples.parquet"
LEVELS_PATH = "results/{study}/difficulty/levels.parquet"
TABLE_PATH = "results/{study}/tables/{table}.csv"
MODEL_DIR = "results/{study}/models/{arm}"
TRAIN_LOG = "results/{study}/train_logs/{arm}.parquet"
TRAIN_STATE = "results/{study}/train_state/{arm}"
EVAL_PATH = "results/{study}/eval/{arm}/{bench}.parquet"
TRAIN_SAMPLES_PATH = "results/{study}/difficulty/train/{set}/{rollout}.samples.parquet"  # {rollout}: workflow.inputs.rollout_key
MIXING_PATH = "results/{study}/data/mixing/{arm}.parquet"
TUNE_PATH = "results/{study}/routing/tune/{arm}/{set}.parquet"  # an arm's samples of a routed arm's tune set
# a fast arm's log-probs of its own samples (the confidence signal, docs/routing.md §1): on a benchmark, on a tune set
CONFIDENCE_PATH = "results/{study}/routing/confidence/{arm}/{bench}.parquet"
CONFIDENCE_TUNE_PATH = "results/{study}/routing/confidence/{arm}/tune/{set}.parquet"
FIGURE_PATH = "results/{study}/figures/{figure}.pdf"
REPORT_PATH = "results/{study}/figures/all.pdf"

# Sharded generation (synergy/shards.py): the paths of one shard's job; sharding.<stage> = 1 keeps one job.
SHARD_PATTERNS = {
    "difficulty": {"output": "results/{study}/difficulty/shards/{bench}/{shard}.samples.parquet",
                   "log": "logs/{study}/sample_difficulty/{bench}/{shard}.log",
                   "benchmark": "results/{study}/benchmarks/sample_difficulty/{bench}/{shard}.tsv"},
    "evaluation": {"output": "results/{study}/eval/shards/{arm}/{bench}/{shard}.parquet",
                   "log": "logs/{study}/evaluate/{arm}/{bench}/{shard}.log",
                   "benchmark": "results/{study}/benchmarks/evaluate/{arm}/{bench}/{shard}.tsv"},
}


UNSHARDED_PATTERNS = {
    "difficulty": {"output": "results/{study}/difficulty/{bench}.samples.parquet",
                   "log": "logs/{study}/sample_difficulty/{bench}.log",
                   "benchmark": "results/{study}/benchmarks/sample_difficulty/{bench}.tsv"},
    "evaluation": {"output": "results/{study}/eval/{arm}/{bench}.parquet",
                   "log": "logs/{study}/evaluate/{arm}/{bench}.log",
                   "benchmark": "results/{study}/benchmarks/evaluate/{arm}/{bench}.tsv"},
}


# evaluation.per_job: arm -- one job per arm writes every benchmark's UNSHARDED output
EVAL_PER_ARM_PATTERNS = {"log": "logs/{study}/evaluate/{arm}.log", "benchmark": "results/{study}/benchmarks/evaluate/{arm}.tsv"}


RESULTS_DIR = "results/{study}"  # a study's outputs
LOGS_DIR = "logs/{study}"  # a study's job logs


def study_dir(name: str) -> str:
    """The folder of study ``name``'s results (relative to the working directory)."""
    return RESULTS_DIR.format(study=name)


def table_csv(name: str, study: str = "{study}") -> str:
    """A table's CSV: a pattern with the ``{study}`` wildcard, or the path of study ``study``."""
    return TABLE_PATH.format(table=name, study=study)


def table_md(name: str, study: str = "{study}") -> str:
    return table_csv(name, study)[: -len(".csv")] + ".md"


def level_table_paths(study: str = "{study}") -> list[str]:
    return [table_csv("level_counts", study), table_md("level_counts", study)]
