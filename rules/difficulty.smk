# Difficulty levels from the base model's pass rate over n samples (paper §2.3), or the paper's
# own tags for benchmarks with `levels: paper`.
from synergy.data.loaders.hub import level_inputs


rule sample_difficulty:
    input:
        bench="results/{study}/data/bench/{bench}.parquet",
        model="results/{study}/models/base",
    output:
        generation_path(STUDY, "difficulty", "output"),
    wildcard_constraints:
        shard=r"\d+",
    params:
        sampling=generation_settings(STUDY.difficulty),  # not the level thresholds: they change no sample
        vllm=vllm_params(STUDY, STUDY.difficulty.backend),
        prompt=STUDY.prompt.to_dict(),
        timeout_s=STUDY.grading.timeout_s,
        seed=lambda wc: generation_seed(STUDY, "difficulty", wc.bench, shard=wc.get("shard")),
        shard=lambda wc: shard_of(STUDY, "difficulty", wc),
    threads: rule_threads(config, "sample_difficulty")
    resources:
        **res("sample_difficulty"),
    conda:
        conda_env(STUDY.difficulty.backend)
    log:
        generation_path(STUDY, "difficulty", "log"),
    benchmark:
        generation_path(STUDY, "difficulty", "benchmark")
    script:
        "../scripts/sample_difficulty.py"


if shard_count(STUDY, "difficulty") > 1:

    localrules:
        gather_difficulty,

    rule gather_difficulty:
        input:
            bench="results/{study}/data/bench/{bench}.parquet",
            shards=lambda wc: shard_paths(STUDY, "difficulty", bench=wc.bench),
        output:
            "results/{study}/difficulty/{bench}.samples.parquet",
        resources:
            **res("gather_difficulty"),
        log:
            "logs/{study}/gather_difficulty/{bench}.log",
        script:
            "../scripts/gather_shards.py"


rule assign_levels:
    input:
        unpack(lambda wc: level_inputs([b.to_dict() for b in STUDY.benchmarks], STUDY.name)),
    output:
        "results/{study}/difficulty/levels.parquet",
    params:
        num_samples=config["difficulty"]["num_samples"],
        thresholds=config["difficulty"]["thresholds"],
    threads: rule_threads(config, "assign_levels", default=1)
    resources:
        **res("assign_levels"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/assign_levels/levels.log",
    script:
        "../scripts/assign_levels.py"


rule tabulate_level_counts:
    input:
        "results/{study}/difficulty/levels.parquet",
    output:
        csv="results/{study}/tables/level_counts.csv",
        md="results/{study}/tables/level_counts.md",
    params:
        benches=STUDY.bench_names,
    threads: rule_threads(config, "tabulate_level_counts", default=1)
    resources:
        **res("tabulate_level_counts"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/tabulate_level_counts/level_counts.log",
    script:
        "../scripts/tabulate_level_counts.py"
