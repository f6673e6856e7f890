# Benchmarks and training sets in the canonical schema (synergy/data/schema.py; paper §2.1-2.4): drawn here
# (loader: synthetic) or read from a hub dataset / local copy (synergy/data/loaders/).
from synergy.data.loaders.hub import alternatives, dataset_dir, dataset_downloads

DATASET_DOWNLOADS = dataset_downloads([s.to_dict() for s in (*STUDY.benchmarks, *STUDY.train_sets)])


rule build_synthetic_benchmark:
    output:
        "results/{study}/data/bench/{bench}.parquet",
    wildcard_constraints:
        bench=alternatives(b.name for b in STUDY.benchmarks if b.loader == "synthetic"),
    params:
        spec=lambda wc: bench_spec(STUDY, wc.bench).to_dict(),
        synthetic=config.get("synthetic"),
    threads: rule_threads(config, "build_synthetic_benchmark", default=1)
    resources:
        **res("build_synthetic_benchmark"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/build_synthetic_benchmark/{bench}.log",
    benchmark:
        "results/{study}/benchmarks/build_synthetic_benchmark/{bench}.tsv"
    script:
        "../scripts/build_synthetic_benchmark.py"


rule build_synthetic_train_set:
    input:
        benchmarks=synthetic_bench_paths(STUDY),
    output:
        "results/{study}/data/train/{set}.parquet",
    wildcard_constraints:
        set=alternatives(t.name for t in STUDY.train_sets if t.loader == "synthetic"),
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
        "logs/{study}/build_synthetic_train_set/{set}.log",
    benchmark:
        "results/{study}/benchmarks/build_synthetic_train_set/{set}.tsv"
    script:
        "../scripts/build_synthetic_train_set.py"


rule load_benchmark:
    input:
        data=lambda wc: dataset_dir(bench_spec(STUDY, wc.bench).to_dict()),
    output:
        "results/{study}/data/bench/{bench}.parquet",
    wildcard_constraints:
        bench=alternatives(b.name for b in STUDY.benchmarks if b.loader != "synthetic"),
    params:
        spec=lambda wc: bench_spec(STUDY, wc.bench).to_dict(),
        seed=lambda wc: derived_seed(STUDY.seed, "subsample", wc.bench),
    resources:
        **res("load_benchmark"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/load_benchmark/{bench}.log",
    benchmark:
        "results/{study}/benchmarks/load_benchmark/{bench}.tsv"
    script:
        "../scripts/load_dataset.py"


rule load_train_set:
    input:
        data=lambda wc: dataset_dir(train_spec(STUDY, wc.set).to_dict()),
    output:
        "results/{study}/data/train/{set}.parquet",
    wildcard_constraints:
        set=alternatives(t.name for t in STUDY.train_sets if t.loader != "synthetic"),
    params:
        spec=lambda wc: train_spec(STUDY, wc.set).to_dict(),
        seed=lambda wc: derived_seed(STUDY.seed, "subsample", wc.set),
    resources:
        **res("load_train_set"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/{study}/load_train_set/{set}.log",
    benchmark:
        "results/{study}/benchmarks/load_train_set/{set}.tsv"
    script:
        "../scripts/load_dataset.py"
