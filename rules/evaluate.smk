# Evaluation of every arm on every benchmark, k graded samples per question (paper §2.4),
# and the tables built from them (paper Tables 1-3, 6, 7, the merge grid, per-level accuracy).


rule evaluate:
    input:
        bench="results/data/bench/{bench}.parquet",
        model=lambda wc: model_dir(STUDY, wc.arm),
    output:
        "results/eval/{arm}/{bench}.parquet",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in STUDY.arm_names) or "^$",
    params:
        evaluation=config.get("evaluation"),
        prompt=config["prompt"],
        grading=config["grading"],
        reasoning=lambda wc: STUDY.arm(wc.arm).eval_reasoning,
        seed=lambda wc: derived_seed(STUDY.seed, "eval", wc.arm, wc.bench),
    threads: rule_threads(config, "evaluate")
    resources:
        **res("evaluate"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/evaluate/{arm}/{bench}.log",
    benchmark:
        "results/benchmarks/evaluate/{arm}/{bench}.tsv"
    script:
        "../scripts/evaluate.py"


rule tabulate_arms:
    input:
        evals=lambda wc: eval_paths(STUDY, table_arms(STUDY, wc.table)),
        levels="results/difficulty/levels.parquet",
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in table_names(STUDY)) or "^$",
    params:
        arms=lambda wc: table_arms(STUDY, wc.table),
        benches=STUDY.bench_names,
        train_sets=[t.to_dict() for t in STUDY.train_sets],
        arm_specs=[a.to_dict() for a in STUDY.arms],
        merge_cells=lambda wc: merge_cells(STUDY) if wc.table == "merge_grid" else [],
    threads: rule_threads(config, "tabulate_arms", default=1)
    resources:
        **res("tabulate_arms"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/tabulate_arms/{table}.log",
    script:
        "../scripts/tabulate_arms.py"
