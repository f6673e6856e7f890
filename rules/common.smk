# Validate the study config when the DAG is built; expose the typed study to the rules.
import os
import re

from synergy.config import load_config
from synergy.workflow import (
    arm_priority,
    arms_of_kind,
    conda_env,
    bench_spec,
    check_record,
    derived_seed,
    base_arm,
    eval_bench_inputs,
    eval_reasoning,
    evaluated_arms,
    external_downloads,
    eval_job_outputs,
    eval_job_path,
    eval_paths,
    eval_seeds,
    export_job_environment,
    final_targets,
    generation_path,
    generation_seed,
    generation_settings,
    grpo_inputs,
    merge_cells,
    merge_inputs,
    merge_settings,
    model_arms,
    model_dir,
    pass_rate_settings,
    routed_inputs,
    confidence_scored,
    CONFIDENCE_PATH,
    CONFIDENCE_TUNE_PATH,
    BENCH_PATH,
    EVAL_PATH,
    routing_params,
    tune_samples,
    TUNE_PATH,
    scorecard_arms,
    scorecard_facts,
    scorecard_inputs,
    SCORECARD_PATTERNS,
    trusts_remote_code,
    sft_data_path,
    shard_count,
    shard_of,
    shard_paths,
    table_arm_specs,
    table_arms,
    table_names,
    table_train_sets,
    synthetic_bench_paths,
    tokenizer_corpus_paths,
    TRAIN_SAMPLES_PATH,
    TRAIN_PATH,
    train_spec,
    train_templates,
    vllm_params,
    write_record,
)

from synergy.resources import check_process_split, check_rule_names, rule_threads, snakemake_resources
from synergy.scorecard.checks import check_externals

STUDY = load_config(config)
check_process_split(config)  # a GRPO mini-batch that the job's processes cannot share fails here, not on the cluster

# One name, one set of settings (synergy/workflow/record.py): a study's files live in results/<study.name>/ and
# logs/<study.name>/; a run whose settings differ from those recorded under its name stops here, before any job.
check_record(config)
# Checkpoints the study did not train (external:): missing folder, not a VLM, processor mismatch, hub id offline,
# trust_remote_code needed -- stop here with the problem named (synergy/scorecard/checks.py, docs/scorecard.md §2).
check_externals(config, arms=STUDY.arm_names, seed_arms=model_arms(STUDY))


onstart:
    write_record(config)


# Jobs load models with trust_remote_code only if the study config turns it on (synergy.models.load_model);
# set here so that every job process (also one a cluster runs, which parses this file again) inherits it.
export_job_environment(STUDY)


def res(rule):
    """A rule's ``resources:`` from the study config's ``resources:`` (memory and run time grow per retry)."""
    return snakemake_resources(config, rule, os.environ)


wildcard_constraints:
    study=re.escape(STUDY.name),
    bench="|".join(re.escape(b) for b in STUDY.bench_names),
    set="|".join(re.escape(t) for t in STUDY.train_set_names),
