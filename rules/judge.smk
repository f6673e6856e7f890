# Optional LLM judge for answers the rules cannot extract (paper §2.4: rule matching + a
# Qwen2.5-VL-32B judge). Scores with and without it: results/<study>/tables/judge_effect.csv.
from synergy.data.loaders.hub import model_source_dir


if (config.get("judge") or {}).get("enabled"):

    rule judge:
        """The LLM judge's verdict on answers the rules could not extract (paper §2.4)."""
        input:
            evals="results/{study}/eval/{arm}/{bench}.parquet",
            bench="results/{study}/data/bench/{bench}.parquet",
            model=model_source_dir(config["judge"]["model"], STUDY.name),
        output:
            "results/{study}/eval_judged/{arm}/{bench}.parquet",
        wildcard_constraints:
            arm="|".join(re.escape(a) for a in model_arms(STUDY)) or "^$",
        params:
            judge=config["judge"],
            timeout_s=STUDY.grading.timeout_s,
            seed=lambda wc: derived_seed(STUDY.seed, "judge", wc.arm, wc.bench),
        threads: config["compute"]["threads"]
        resources:
            **res("judge"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/judge/{arm}/{bench}.log",
        benchmark:
            "results/{study}/benchmarks/judge/{arm}/{bench}.tsv"
        script:
            "../scripts/judge.py"

    rule tabulate_judge:
        """Accuracy of every arm with and without the judge."""
        input:
            [f"results/{STUDY.name}/eval_judged/{a}/{b}.parquet" for a in model_arms(STUDY) for b in STUDY.bench_names],
        output:
            csv="results/{study}/tables/judge_effect.csv",
            md="results/{study}/tables/judge_effect.md",
        resources:
            **res("tabulate_judge"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/tabulate_judge/judge_effect.log",
        script:
            "../scripts/tabulate_judge.py"
