"""Pure helpers of the Snakemake workflow: config -> paths, seeds, params and targets.

Rules stay declarative; everything longer than a line lives here and is unit-tested
(tests/test_workflow.py). Modules: ``paths`` (the path schema), ``inputs`` (what the data, training
and merge rules read, their seeds and settings), ``generation`` (the jobs of the sampling and
evaluation stages: sharding, per-arm evaluation), ``targets`` (the tables and figures a study
builds, the default target), ``external`` (checkpoints the study did not train: their folders, seeds and
scorecard inputs), ``record`` (one name, one set of settings: the study record), ``cost`` (the jobs behind each arm's cost) and ``jobs`` (conda env, vLLM settings, job environment). This package
never imports snakemake or torch, and nothing in it imports ``synergy.report`` (the report's own
helpers, synergy/report/targets.py, build on it).
"""

from __future__ import annotations

from synergy.workflow.cost import cost_graph, cost_inputs
from synergy.workflow.external import (
    base_arm,
    eval_reasoning,
    evaluated_arms,
    external_downloads,
    external_model_dir,
    scorecard_arms,
    scorecard_facts,
    scorecard_inputs,
    seed_name,
    trusts_remote_code,
    SCORECARD_PATTERNS,
)
from synergy.workflow.generation import (
    eval_bench_inputs,
    eval_job_outputs,
    eval_job_path,
    eval_per_arm,
    eval_seeds,
    generation_path,
    generation_seed,
    generation_settings,
    shard_count,
    shard_of,
    shard_paths,
)
from synergy.workflow.inputs import (
    ROLLOUT_FIELDS,
    arm_priority,
    arms_of_kind,
    bench_spec,
    derived_seed,
    eval_paths,
    grpo_inputs,
    merge_inputs,
    merge_settings,
    model_arms,
    model_dir,
    needs_base_rollouts,
    pass_rate_settings,
    rollout_key,
    rollout_settings,
    confidence_scored,
    routed_inputs,
    routing_files,
    routing_params,
    tune_samples,
    sft_data_path,
    synthetic_bench_paths,
    tokenizer_corpus_paths,
    train_samples_path,
    train_spec,
    train_templates,
)
from synergy.workflow.jobs import conda_env, export_job_environment, job_environment, vllm_params
from synergy.workflow.paths import (
    LOGS_DIR,
    RESULTS_DIR,
    study_dir,
    BASE_MODEL_DIR,
    BENCH_PATH,
    CONFIDENCE_PATH,
    CONFIDENCE_TUNE_PATH,
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
    TUNE_PATH,
    UNSHARDED_PATTERNS,
    level_table_paths,
    table_csv,
    table_md,
)
from synergy.workflow.record import StudyConflict, check_record, record_path, recorded_settings, write_record
from synergy.workflow.targets import (
    ARM_TABLES,
    COST_TABLE,
    ROUTING_TABLE,
    has_routed,
    study_figures,
    FIGURES,
    GAIN_TABLE,
    FINDINGS_TABLE,
    REPORT_TABLES,
    SYNERGY,
    WORDS_TABLE,
    FigureDef,
    figure_targets,
    final_targets,
    merge_cells,
    merge_grid_arms,
    table_arm_specs,
    table_arms,
    table_names,
    table_train_sets,
)

__all__ = [
    "ARM_TABLES", "COST_TABLE", "ROUTING_TABLE", "has_routed", "study_figures", "cost_graph", "cost_inputs", "FINDINGS_TABLE", "BASE_MODEL_DIR", "BENCH_PATH", "EVAL_PATH", "EVAL_PER_ARM_PATTERNS", "FIGURES", "FIGURE_PATH",
    "GAIN_TABLE", "LEVELS_PATH", "MIXING_PATH", "MODEL_DIR", "REPORT_PATH", "REPORT_TABLES", "ROLLOUT_FIELDS",
    "SAMPLES_PATH", "SHARD_PATTERNS", "SYNERGY", "TABLE_PATH", "TRAIN_LOG", "TRAIN_PATH", "TRAIN_SAMPLES_PATH",
    "TRAIN_STATE", "UNSHARDED_PATTERNS", "WORDS_TABLE", "FigureDef", "arm_priority", "arms_of_kind", "bench_spec",
    "conda_env", "derived_seed", "eval_bench_inputs", "eval_job_outputs", "eval_job_path", "eval_paths",
    "eval_per_arm", "eval_seeds", "export_job_environment", "figure_targets", "final_targets", "generation_path",
    "generation_seed", "generation_settings", "grpo_inputs", "job_environment", "level_table_paths", "merge_cells",
    "merge_grid_arms", "merge_inputs", "merge_settings", "model_arms", "model_dir", "routed_inputs", "routing_files", "confidence_scored", "CONFIDENCE_PATH", "CONFIDENCE_TUNE_PATH", "routing_params", "tune_samples", "TUNE_PATH", "needs_base_rollouts", "pass_rate_settings",
    "rollout_key", "rollout_settings", "sft_data_path", "shard_count", "shard_of", "shard_paths",
    "synthetic_bench_paths", "table_arm_specs", "table_arms", "table_csv", "table_md", "table_names",
    "table_train_sets", "tokenizer_corpus_paths", "train_samples_path", "train_spec", "train_templates",
    "vllm_params", "LOGS_DIR", "RESULTS_DIR", "StudyConflict", "check_record", "record_path", "recorded_settings",
    "study_dir", "write_record", "SCORECARD_PATTERNS", "base_arm", "eval_reasoning", "evaluated_arms",
    "external_downloads", "external_model_dir", "scorecard_arms", "scorecard_facts", "scorecard_inputs", "seed_name", "trusts_remote_code",
]
