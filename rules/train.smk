# Training arms: long-CoT SFT (paper §2.1), GRPO (paper §2.2) and its hybrids (§3.1: two-stage is GRPO
# from an SFT arm, interleaved / progressive are GRPO settings), data mixing (§3.2) and merging (§3.3).


rule train_sft:
    input:
        init=lambda wc: model_dir(STUDY, STUDY.arm(wc.arm).init),
        data=lambda wc: sft_data_path(STUDY, wc.arm),
    output:
        model=directory("results/{study}/models/{arm}"),
        log="results/{study}/train_logs/{arm}.parquet",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "sft", "mixing")) or "^$",
    params:
        settings=lambda wc: STUDY.arm_settings(wc.arm).to_dict(),
        init_epoch=lambda wc: STUDY.arm(wc.arm).init_epoch,  # an SFT arm's kept epoch (paper §3.1 two-stage)
        image_position=STUDY.prompt.image_position,
        max_pixels=STUDY.prompt.max_pixels,
        seed=lambda wc: derived_seed(STUDY.seed, "train", wc.arm),
        state_dir="results/{study}/train_state/{arm}",
    priority: lambda wc: arm_priority(STUDY, wc.arm)  # long chains first (synergy.workflow.arm_priority)
    threads: rule_threads(config, "train_sft")
    resources:
        **res("train_sft"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/train_sft/{arm}.log",
    benchmark:
        "results/{study}/benchmarks/train_sft/{arm}.tsv"
    script:
        "../scripts/train_sft.py"


# The base model's G rollouts on a train set, one job per distinct rollout setting of the GRPO arms that read
# them ({rollout}: synergy.workflow.rollout_key); it gets those settings only, so a change of, say, the
# learning rate re-runs no sampling.
rule sample_train_pass_rates:
    input:
        bench="results/{study}/data/train/{set}.parquet",
        model="results/{study}/models/base",
    output:
        TRAIN_SAMPLES_PATH,
    wildcard_constraints:
        rollout="[0-9a-f]{8}",
    params:
        rollout=lambda wc: pass_rate_settings(STUDY, wc.set, wc.rollout),
        image_position=STUDY.prompt.image_position,
        max_pixels=STUDY.prompt.max_pixels,
        timeout_s=STUDY.grading.timeout_s,
        seed=lambda wc: derived_seed(STUDY.seed, "train-pass-rates", wc.set),
    priority: 1  # a GRPO training waits on it (trainings before evaluations: synergy.workflow.arm_priority)
    threads: rule_threads(config, "sample_train_pass_rates")
    resources:
        **res("sample_train_pass_rates"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/sample_train_pass_rates/{set}.{rollout}.log",
    benchmark:
        "results/{study}/benchmarks/sample_train_pass_rates/{set}.{rollout}.tsv"
    script:
        "../scripts/sample_train_pass_rates.py"


rule train_grpo:
    input:
        unpack(lambda wc: grpo_inputs(STUDY, wc.arm)),
        init=lambda wc: model_dir(STUDY, STUDY.arm(wc.arm).init),
        data=lambda wc: f"results/{STUDY.name}/data/train/{STUDY.arm(wc.arm).train_set}.parquet",
    output:
        model=directory("results/{study}/models/{arm}"),
        log="results/{study}/train_logs/{arm}.parquet",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "grpo")) or "^$",
    params:
        settings=lambda wc: STUDY.arm_settings(wc.arm).to_dict(),
        init_epoch=lambda wc: STUDY.arm(wc.arm).init_epoch,  # an SFT arm's kept epoch (paper §3.1 two-stage)
        image_position=STUDY.prompt.image_position,
        max_pixels=STUDY.prompt.max_pixels,
        grading=STUDY.grading.to_dict(),
        seed=lambda wc: derived_seed(STUDY.seed, "train", wc.arm),
        vllm=lambda wc: vllm_params(STUDY, STUDY.arm_settings(wc.arm).rollout_backend),
        state_dir="results/{study}/train_state/{arm}",
    priority: lambda wc: arm_priority(STUDY, wc.arm)  # long chains first (synergy.workflow.arm_priority)
    threads: rule_threads(config, "train_grpo")
    resources:
        **res("train_grpo"),
    conda:
        lambda wc: conda_env(STUDY.arm_settings(wc.arm).rollout_backend)
    log:
        "logs/{study}/train_grpo/{arm}.log",
    benchmark:
        "results/{study}/benchmarks/train_grpo/{arm}.tsv"
    script:
        "../scripts/train_grpo.py"


rule build_mixing_set:
    input:
        model=lambda wc: model_dir(STUDY, STUDY.arm(wc.arm).source),
        data=lambda wc: f"results/{STUDY.name}/data/train/{STUDY.arm(wc.arm).train_set}.parquet",
    output:
        data="results/{study}/data/mixing/{arm}.parquet",
        samples="results/{study}/data/mixing/{arm}.samples.parquet",
        summary="results/{study}/data/mixing/{arm}.json",
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "mixing")) or "^$",
    params:
        mixing=config.get("mixing"),
        source=lambda wc: STUDY.arm(wc.arm).source,
        image_position=STUDY.prompt.image_position,
        max_pixels=STUDY.prompt.max_pixels,
        timeout_s=STUDY.grading.timeout_s,
        seed=lambda wc: derived_seed(STUDY.seed, "mixing", wc.arm),
    priority: lambda wc: arm_priority(STUDY, wc.arm) + 1  # long chains first (synergy.workflow.arm_priority)
    threads: rule_threads(config, "build_mixing_set")
    resources:
        **res("build_mixing_set"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/build_mixing_set/{arm}.log",
    benchmark:
        "results/{study}/benchmarks/build_mixing_set/{arm}.tsv"
    script:
        "../scripts/build_mixing_set.py"


rule merge_models:
    input:
        unpack(lambda wc: merge_inputs(STUDY, wc.arm)),
    output:
        model=directory("results/{study}/models/{arm}"),
    wildcard_constraints:
        arm="|".join(re.escape(a) for a in arms_of_kind(STUDY, "merge")) or "^$",
    params:
        settings=lambda wc: merge_settings(STUDY, wc.arm),
    threads: rule_threads(config, "merge_models", default=1)
    resources:
        **res("merge_models"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/merge_models/{arm}.log",
    benchmark:
        "results/{study}/benchmarks/merge_models/{arm}.tsv"
    script:
        "../scripts/merge_models.py"
