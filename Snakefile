# synergy: "The Synergy Dilemma of Long-CoT SFT and RL" (arXiv 2507.07562) as a workflow.
#
# Path schema (wildcards: {bench} a benchmark, {set} a training set):
#   results/data/bench/{bench}.parquet          canonical evaluation questions
#   results/data/train/{set}.parquet            RL queries, SFT traces, the tiny model's pretraining set
#   results/models/base/                        the base model (HF dir: weights + processor)
#   results/difficulty/{bench}.samples.parquet  base model, n samples per question, graded, raw text kept
#   results/difficulty/levels.parquet           question -> passes, pass rate, level L1..L5
#   results/tables/{table}.csv (+ .md)          tables
#   logs/<rule>/...log                          one log per job;  results/benchmarks/<rule>/...tsv  run times
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config/config.yaml")


include: "rules/common.smk"  # config validation, wildcard constraints
include: "rules/data.smk"  # benchmarks and training sets
include: "rules/models.smk"  # the base model
include: "rules/difficulty.smk"  # base-model samples -> pass rates -> levels (paper §2.3)


localrules:
    all,
    tabulate_level_counts,


rule all:
    input:
        final_targets(STUDY),
