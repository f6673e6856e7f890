"""Pure helpers of the Snakemake workflow: config -> paths, seeds, params and targets.

Rules stay declarative; everything longer than a line lives here and is unit-tested
(tests/test_workflow.py). Modules: ``paths`` (the path schema), ``inputs`` (what the data, training
and merge rules read, their seeds and settings), ``generation`` (the jobs of the sampling and
evaluation stages: sharding, per-arm evaluation), ``targets`` (the tables and figures a study
builds, the default target) and ``jobs`` (conda env, vLLM settings, job environment). This package
never imports snakemake or torch, and nothing in it imports ``synergy.report`` (the report's own
helpers, synergy/report/targets.py, build on it).
"""

from __future__ import annotations

from synergy.workflow.generation import (
    eval_bench_inputs,
    eval_job_outputs,
    eval_job_path,
    eval_per_arm,
    eval_seeds,
    generation_path,
    generation_seed,
    shard_count,
    shard_of,
    shard_paths,
)
from synergy.workflow.inputs import (
    arm_priority,
    arms_of_kind,
    bench_spec,
    derived_seed,
    eval_paths,
    grpo_inputs,
    merge_inputs,
    merge_settings,
    model_dir,
    sft_data_path,
    synthetic_bench_paths,
    tokenizer_corpus_paths,
    train_spec,
    train_templates,
)
from synergy.workflow.jobs import conda_env, export_job_environment, job_environment, vllm_params
from synergy.workflow.paths import (
    BASE_MODEL_DIR,
    BENCH_PATH,
    EVAL_PATH,
    EVAL_PER_ARM_PATTERNS,
    FIGURE_PATH,
    LEVELS_PATH,
    MIXING_PATH,
    MODEL_DIR,
    REPORT_PATH,
    SAMPLES_PATH,
    SHARD_PATTERNS,
    TABLE_PATH,
    TRAIN_LOG,
    TRAIN_PATH,
    TRAIN_SAMPLES_PATH,
    TRAIN_STATE,
    UNSHARDED_PATTERNS,
    level_table_paths,
    table_csv,
    table_md,
)
from synergy.workflow.targets import (
    ARM_TABLES,
    FIGURES,
    GAIN_TABLE,
    REPORT_TABLES,
    SYNERGY,
    WORDS_TABLE,
    FigureDef,
    figure_targets,
    final_targets,
    merge_cells,
    merge_grid_arms,
    table_arms,
    table_names,
)

__all__ = [
    "ARM_TABLES", "BASE_MODEL_DIR", "BENCH_PATH", "EVAL_PATH", "EVAL_PER_ARM_PATTERNS", "FIGURES", "FIGURE_PATH",
    "GAIN_TABLE", "LEVELS_PATH", "MIXING_PATH", "MODEL_DIR", "REPORT_PATH", "REPORT_TABLES", "SAMPLES_PATH",
    "SHARD_PATTERNS", "SYNERGY", "TABLE_PATH", "TRAIN_LOG", "TRAIN_PATH", "TRAIN_SAMPLES_PATH", "TRAIN_STATE",
    "UNSHARDED_PATTERNS", "WORDS_TABLE", "FigureDef", "arm_priority", "arms_of_kind", "bench_spec", "conda_env",
    "derived_seed", "eval_bench_inputs", "eval_job_outputs", "eval_job_path", "eval_paths", "eval_per_arm",
    "eval_seeds", "export_job_environment", "figure_targets", "final_targets", "generation_path", "generation_seed",
    "grpo_inputs", "job_environment", "level_table_paths", "merge_cells", "merge_grid_arms", "merge_inputs",
    "merge_settings", "model_dir", "sft_data_path", "shard_count", "shard_of", "shard_paths", "synthetic_bench_paths",
    "table_arms", "table_csv", "table_md", "table_names", "tokenizer_corpus_paths", "train_spec", "train_templates",
    "vllm_params",
]
