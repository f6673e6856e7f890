# The base model: the tiny Qwen2.5-VL built and pretrained here (embedded study).


rule build_base_model:
    input:
        pretrain=lambda wc: f"results/data/train/{STUDY.base_model.pretrain.train_set}.parquet",
        corpus=tokenizer_corpus_paths(STUDY),
    output:
        directory("results/models/base"),
    params:
        base_model=config["base_model"],
        image_size=config.get("synthetic", {}).get("image_size"),
        prompt=config["prompt"],
    threads: rule_threads(config, "build_base_model")
    resources:
        **res("build_base_model"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/build_base_model/base.log",
    benchmark:
        "results/benchmarks/build_base_model/base.tsv"
    script:
        "../scripts/build_base_model.py"
