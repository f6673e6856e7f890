# The scorecard of one arm: a study arm or a checkpoint the study did not train (`external:`), scored through
# the paper's lens (accuracy and gain over the base model by difficulty level, response length, reasoning words,
# the closest study arm). Beyond the paper; docs/scorecard.md. An external arm is sampled by rule evaluate.


localrules:
    scorecard,


rule scorecard:
    """results/<study>/scorecards/{arm}.{md,csv,pdf} from the arm's evaluation, the base model's and the study arms'."""
    input:
        unpack(lambda wc: scorecard_inputs(STUDY, wc.arm)),
        code=[code_file(workflow.basedir, "synergy", *f) for f in (("scorecard", "card.py"), ("report", "scorecard.py"))],
    output:
        **{ext: path for ext, path in SCORECARD_PATTERNS.items()},
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in scorecard_arms(STUDY)) or "^$",
    params:
        base=base_arm(STUDY),  # None without a base arm: the job stops, naming the problem
        study_arms=STUDY.arm_names,
        facts=lambda wc: scorecard_facts(STUDY, wc.arm),
        words=list(REPORT.reasoning_words.words),
        bootstrap=REPORT.bootstrap.to_dict(),
    resources:
        **res("scorecard"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/scorecard/{arm}.log",
    benchmark:
        "results/{study}/benchmarks/scorecard/{arm}.tsv"
    script:
        "../scripts/make_scorecard.py"
