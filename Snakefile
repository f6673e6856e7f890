# synergy: "The Synergy Dilemma of Long-CoT SFT and RL" (arXiv 2507.07562) as a workflow.
#
# Path schema: every study in its own folders, named by study.name ({study}: embedded, smoke, paper, ...; a run
# with other settings under a recorded name is refused, synergy/workflow/record.py). Wildcards: {bench} a
# benchmark, {set} a training set, {arm} a trained or merged model.
#   results/{study}/study.yaml                          the study's settings record
#   results/{study}/data/bench/{bench}.parquet          canonical evaluation questions
#   results/{study}/data/train/{set}.parquet            RL queries, SFT traces, the tiny model's pretraining set
#   results/{study}/models/base/                        the base model (HF dir: weights + processor)
#   results/{study}/difficulty/{bench}.samples.parquet  base model, n samples per question, graded, raw text kept
#   results/{study}/difficulty/levels.parquet           question -> passes, pass rate, level L1..L5
#   results/{study}/models/{arm}/                       every trained arm (HF dir); train_logs/{arm}.parquet
#   results/{study}/eval/{arm}/{bench}.parquet          k graded samples per question (every arm, every benchmark)
#   results/{study}/tables/{table}.csv (+ .md)          tables
#   results/{study}/figures/{figure}.pdf, all.pdf       figures and the one report of the whole study
#   results/{study}/scorecards/{arm}.{md,csv,pdf}       one arm's (or an external checkpoint's) scorecard
#   logs/{study}/<rule>/...log                          one log per job;  results/{study}/benchmarks/<rule>/...tsv
import os

from snakemake.utils import min_version

min_version("9.19")  # the profiles are profiles/*/profile.yaml, read from Snakemake 9.19 on


configfile: os.path.join(workflow.basedir, "config/config.yaml")


include: "rules/common.smk"  # config validation, wildcard constraints
include: "rules/data.smk"  # benchmarks and training sets
include: "rules/download.smk"  # hub datasets and models into resources/ (or local_path)
include: "rules/models.smk"  # the base model
include: "rules/difficulty.smk"  # base-model samples -> pass rates -> levels (paper §2.3)
include: "rules/train.smk"  # SFT and GRPO arms (paper §2.1-2.2)
include: "rules/evaluate.smk"  # k samples per question per arm, tables (paper §2.4, Tables 1-3)
include: "rules/judge.smk"  # optional LLM judge for answers the rules cannot extract (paper §2.4)
include: "rules/report.smk"  # figures, Table 5 and results/<study>/figures/all.pdf (paper figures)
include: "rules/scorecard.smk"  # one arm or outside checkpoint through the paper's lens (docs/scorecard.md)


localrules:
    all,
    tabulate_level_counts,
    tabulate_arms,


rule all:
    """Every table and figure of the study and results/<study>/figures/all.pdf (the default target)."""
    input:
        final_targets(STUDY),
        [f"results/{STUDY.name}/tables/judge_effect.csv"] if (config.get("judge") or {}).get("enabled") else [],
    resources:
        **res("all"),


# A `resources:` entry must name a rule. Some rules exist only in some studies (the kind of base model, sharded
# generation): they may be named anyway (config.yaml names build_base_model; the paper study links its model).
CONDITIONAL_RULES = ["build_base_model", "link_base_model", "gather_difficulty", "gather_eval", "route_answers",
                     "sample_route_tune", "tabulate_routing"]
check_rule_names(config, [r.name for r in workflow.rules] + CONDITIONAL_RULES)
