# Training arms: long-CoT SFT (paper §2.1) and GRPO (paper §2.2), one job per arm.


rule train_sft:
    input:
        init=lambda wc: model_dir(STUDY, STUDY.arm(wc.arm).init),
        data=lambda wc: f"results/data/train/{STUDY.arm(wc.arm).train_set}.parquet",
    output:
        model=directory("results/models/{arm}"),
        log="results/train_logs/{arm}.parquet",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "sft")) or "^$",
    params:
        settings=lambda wc: STUDY.arm_settings(wc.arm).to_dict(),
        prompt=config["prompt"],
        seed=lambda wc: derived_seed(STUDY.seed, "train", wc.arm),
        state_dir="results/train_state/{arm}",
    threads: rule_threads(config, "train_sft")
    resources:
        **res("train_sft"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/train_sft/{arm}.log",
    benchmark:
        "results/benchmarks/train_sft/{arm}.tsv"
    script:
        "../scripts/train_sft.py"


rule sample_train_pass_rates:
    input:
        bench="results/data/train/{set}.parquet",
        model="results/models/base",
    output:
        "results/difficulty/train/{set}.samples.parquet",
    params:
        grpo=config.get("grpo"),
        prompt=config["prompt"],
        grading=config["grading"],
        seed=lambda wc: derived_seed(STUDY.seed, "train-pass-rates", wc.set),
    threads: rule_threads(config, "sample_train_pass_rates")
    resources:
        **res("sample_train_pass_rates"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/sample_train_pass_rates/{set}.log",
    benchmark:
        "results/benchmarks/sample_train_pass_rates/{set}.tsv"
    script:
        "../scripts/sample_train_pass_rates.py"


rule train_grpo:
    input:
        unpack(lambda wc: grpo_inputs(STUDY, wc.arm)),
        init=lambda wc: model_dir(STUDY, STUDY.arm(wc.arm).init),
        data=lambda wc: f"results/data/train/{STUDY.arm(wc.arm).train_set}.parquet",
    output:
        model=directory("results/models/{arm}"),
        log="results/train_logs/{arm}.parquet",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "grpo")) or "^$",
    params:
        settings=lambda wc: STUDY.arm_settings(wc.arm).to_dict(),
        prompt=config["prompt"],
        grading=config["grading"],
        seed=lambda wc: derived_seed(STUDY.seed, "train", wc.arm),
        state_dir="results/train_state/{arm}",
    threads: rule_threads(config, "train_grpo")
    resources:
        **res("train_grpo"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/train_grpo/{arm}.log",
    benchmark:
        "results/benchmarks/train_grpo/{arm}.tsv"
    script:
        "../scripts/train_grpo.py"
