# Evaluation of every arm on every benchmark, k graded samples per question (paper §2.4),
# and the tables built from them (paper Tables 1-3, 6, 7, the merge grid, per-level accuracy).
from synergy.report.targets import report_caption, report_section


rule evaluate:
    """k graded samples per question of one arm (paper §2.4: k = 4, T 0.6, top-p 0.95)."""
    # one job per (arm, benchmark[, shard]), or per arm over every benchmark (evaluation.per_job: arm)
    input:
        bench=lambda wc: eval_bench_inputs(STUDY, wc),
        model=lambda wc: model_dir(STUDY, wc.arm),
    output:
        eval_job_outputs(STUDY),
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in evaluated_arms(STUDY)) or "^$",  # study arms with a model, external arms
        shard=r"\d+",
    params:
        sampling=generation_settings(STUDY.evaluation),  # not per_job: the job layout changes no sample
        vllm=vllm_params(STUDY, STUDY.evaluation.backend if STUDY.evaluation else "hf"),
        prompt=STUDY.prompt.to_dict(),
        timeout_s=STUDY.grading.timeout_s,
        reasoning=lambda wc: eval_reasoning(STUDY, wc.arm),
        trust_remote_code=lambda wc: trusts_remote_code(STUDY, wc.arm),
        seed=lambda wc: eval_seeds(STUDY, wc),
        shard=lambda wc: shard_of(STUDY, "evaluation", wc),
    threads: rule_threads(config, "evaluate")
    resources:
        **res("evaluate"),
    conda:
        conda_env(STUDY.evaluation.backend if STUDY.evaluation else "hf")
    log:
        eval_job_path(STUDY, "log"),
    benchmark:
        eval_job_path(STUDY, "benchmark")
    script:
        "../scripts/evaluate.py"


if shard_count(STUDY, "evaluation") > 1:

    localrules:
        gather_eval,

    rule gather_eval:
        """The shards of one arm's evaluation on one benchmark, checked and joined into one file."""
        input:
            bench="results/{study}/data/bench/{bench}.parquet",
            shards=lambda wc: shard_paths(STUDY, "evaluation", arm=wc.arm, bench=wc.bench),
        output:
            "results/{study}/eval/{arm}/{bench}.parquet",
        wildcard_constraints:
            arm="|".join(re.escape(a) for a in evaluated_arms(STUDY)) or "^$",
        resources:
            **res("gather_eval"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/gather_eval/{arm}/{bench}.log",
        script:
            "../scripts/gather_shards.py"


ROUTED = [a.name for a in STUDY.arms if a.kind == "routed"]

if ROUTED:

    localrules:
        route_answers,

    TUNE = tune_samples(STUDY)  # tune set -> the arms sampled on it

    if TUNE:

        rule sample_route_tune:
            """One parent of a routed arm sampled on the routed arm's tune set, a train set neither parent trained on,
            with the evaluation's settings: the routing threshold is chosen there, never on the benchmarks."""
            input:
                bench=lambda wc: [TRAIN_PATH.format(study=wc.study, set=wc.set)],
                model=lambda wc: model_dir(STUDY, wc.arm),
            output:
                TUNE_PATH,
            wildcard_constraints:
                arm="|".join(re.escape(a) for a in sorted(set().union(*TUNE.values()))),
                set="|".join(re.escape(t) for t in TUNE),
            params:
                sampling=generation_settings(STUDY.evaluation),
                vllm=vllm_params(STUDY, STUDY.evaluation.backend if STUDY.evaluation else "hf"),
                prompt=STUDY.prompt.to_dict(),
                timeout_s=STUDY.grading.timeout_s,
                reasoning=lambda wc: eval_reasoning(STUDY, wc.arm),
                trust_remote_code=None,  # a study arm: the job environment's setting
                seed=lambda wc: [derived_seed(STUDY.seed, "route-tune", wc.arm, wc.set)],
                shard=(0, 1),
            threads: rule_threads(config, "evaluate")
            resources:
                **res("evaluate"),
            conda:
                conda_env(STUDY.evaluation.backend if STUDY.evaluation else "hf")
            log:
                "logs/{study}/sample_route_tune/{arm}/{set}.log",
            benchmark:
                "results/{study}/benchmarks/sample_route_tune/{arm}/{set}.tsv"
            script:
                "../scripts/evaluate.py"

    CONFIDENT = confidence_scored(STUDY)  # fast arm -> the tune sets it is scored on (signal: confidence)

    if CONFIDENT:

        rule score_confidence:
            """A fast arm's log-probs of its own evaluation samples of one benchmark, teacher-forced under its own
            model with the evaluation's prompts: the confidence signal of a routed arm (docs/routing.md §1)."""
            input:
                model=lambda wc: model_dir(STUDY, wc.arm),
                evals=lambda wc: EVAL_PATH.format(study=wc.study, arm=wc.arm, bench=wc.bench),
                bench=lambda wc: BENCH_PATH.format(study=wc.study, bench=wc.bench),
            output:
                CONFIDENCE_PATH,
            wildcard_constraints:
                arm="|".join(re.escape(a) for a in sorted(CONFIDENT)),
            params:
                prompt=STUDY.prompt.to_dict(),
                reasoning=lambda wc: eval_reasoning(STUDY, wc.arm),
                trust_remote_code=lambda wc: trusts_remote_code(STUDY, wc.arm),
            threads: rule_threads(config, "evaluate")
            resources:
                **res("evaluate"),
            conda:
                conda_env("hf")
            log:
                "logs/{study}/score_confidence/{arm}/{bench}.log",
            benchmark:
                "results/{study}/benchmarks/score_confidence/{arm}/{bench}.tsv"
            script:
                "../scripts/score_confidence.py"

        if any(CONFIDENT.values()):

            rule score_confidence_tune:
                """A fast arm's log-probs of its own samples of a routed arm's tune set (docs/routing.md §1, §3)."""
                input:
                    model=lambda wc: model_dir(STUDY, wc.arm),
                    evals=lambda wc: TUNE_PATH.format(study=wc.study, arm=wc.arm, set=wc.set),
                    bench=lambda wc: TRAIN_PATH.format(study=wc.study, set=wc.set),
                output:
                    CONFIDENCE_TUNE_PATH,
                wildcard_constraints:
                    arm="|".join(re.escape(a) for a in sorted(a for a, t in CONFIDENT.items() if t)),
                    set="|".join(re.escape(t) for t in sorted(set().union(*CONFIDENT.values()))),
                params:
                    prompt=STUDY.prompt.to_dict(),
                    reasoning=lambda wc: eval_reasoning(STUDY, wc.arm),
                    trust_remote_code=lambda wc: trusts_remote_code(STUDY, wc.arm),
                threads: rule_threads(config, "evaluate")
                resources:
                    **res("evaluate"),
                conda:
                    conda_env("hf")
                log:
                    "logs/{study}/score_confidence_tune/{arm}/{set}.log",
                benchmark:
                    "results/{study}/benchmarks/score_confidence_tune/{arm}/{set}.tsv"
                script:
                    "../scripts/score_confidence.py"

    rule route_answers:
        """A routed arm's answers on one benchmark: per question, its fast arm's samples when they agree, else its
        slow arm's (beyond the paper; docs/routing.md). No model runs: it reads the two arms' evaluations."""
        input:
            unpack(lambda wc: routed_inputs(STUDY, wc.arm, wc.bench)),
        output:
            "results/{study}/eval/{arm}/{bench}.parquet",
        wildcard_constraints:
            arm="|".join(re.escape(a) for a in ROUTED),
        params:
            routing=lambda wc: routing_params(STUDY, wc.arm),
        resources:
            **res("route_answers"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/route_answers/{arm}/{bench}.log",
        benchmark:
            "results/{study}/benchmarks/route_answers/{arm}/{bench}.tsv"
        script:
            "../scripts/route_answers.py"


rule tabulate_arms:
    """One of the paper's arm tables (Tables 1-3, 6, 7, the merge grid, accuracy by level)."""
    input:
        evals=lambda wc: eval_paths(STUDY, table_arms(STUDY, wc.table)),
        levels="results/{study}/difficulty/levels.parquet",
    output:
        csv=report("results/{study}/tables/{table}.csv", caption="../report/table.rst",
                   category=lambda wc: report_section(wc.table), labels=lambda wc: {"table": wc.table}),
        md="results/{study}/tables/{table}.md",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in table_names(STUDY)) or "^$",
    params:
        caption=lambda wc: report_caption(wc.table),
        arms=lambda wc: table_arms(STUDY, wc.table),
        benches=STUDY.bench_names,
        train_sets=lambda wc: table_train_sets(STUDY, wc.table),
        arm_specs=lambda wc: table_arm_specs(STUDY, wc.table),
        merge_cells=lambda wc: merge_cells(STUDY) if wc.table == "merge_grid" else [],
    threads: rule_threads(config, "tabulate_arms", default=1)
    resources:
        **res("tabulate_arms"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/tabulate_arms/{table}.log",
    script:
        "../scripts/tabulate_arms.py"
