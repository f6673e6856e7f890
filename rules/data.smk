# Benchmarks and training sets in the canonical schema (DESIGN.md §3; paper §2.1).


rule build_synthetic_benchmark:
    output:
        "results/data/bench/{bench}.parquet",
    params:
        spec=lambda wc: bench_spec(STUDY, wc.bench).to_dict(),
        synthetic=config.get("synthetic"),
    threads: rule_threads(config, "build_synthetic_benchmark", default=1)
    resources:
        **res("build_synthetic_benchmark"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/build_synthetic_benchmark/{bench}.log",
    benchmark:
        "results/benchmarks/build_synthetic_benchmark/{bench}.tsv"
    script:
        "../scripts/build_synthetic_benchmark.py"


rule build_synthetic_train_set:
    input:
        benchmarks=synthetic_bench_paths(STUDY),
    output:
        "results/data/train/{set}.parquet",
    params:
        spec=lambda wc: train_spec(STUDY, wc.set).to_dict(),
        templates=lambda wc: train_templates(STUDY, train_spec(STUDY, wc.set)),
        synthetic=config.get("synthetic"),
    threads: rule_threads(config, "build_synthetic_train_set", default=1)
    resources:
        **res("build_synthetic_train_set"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/build_synthetic_train_set/{set}.log",
    benchmark:
        "results/benchmarks/build_synthetic_train_set/{set}.tsv"
    script:
        "../scripts/build_synthetic_train_set.py"
