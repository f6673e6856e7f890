# The base model: the tiny Qwen2.5-VL built and pretrained here (embedded study), or a Hugging Face
# model folder (paper study: Qwen2.5-VL-7B-Instruct) linked into place from resources/ or local_path.
from synergy.data.loaders.hub import model_source_dir


if STUDY.base_model.source == "tiny":

    rule build_base_model:
        input:
            pretrain=lambda wc: f"results/{STUDY.name}/data/train/{STUDY.base_model.pretrain.train_set}.parquet",
            corpus=tokenizer_corpus_paths(STUDY),
        output:
            directory("results/{study}/models/base"),
        params:
            tiny=STUDY.base_model.tiny.to_dict(),  # not path, revision, trust_remote_code: no tiny build reads them
            pretrain=STUDY.base_model.pretrain.to_dict(),
            image_size=config.get("synthetic", {}).get("image_size"),
            image_position=STUDY.prompt.image_position,
        threads: rule_threads(config, "build_base_model")
        resources:
            **res("build_base_model"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/build_base_model/base.log",
        benchmark:
            "results/{study}/benchmarks/build_base_model/base.tsv"
        script:
            "../scripts/build_base_model.py"

else:

    localrules:
        link_base_model,

    rule link_base_model:
        input:
            model=model_source_dir(config["base_model"], STUDY.name),
        output:
            directory("results/{study}/models/base"),
        resources:
            **res("link_base_model"),
        conda:
            "../envs/cpu.yaml"
        log:
            "logs/{study}/link_base_model/base.log",
        script:
            "../scripts/link_base_model.py"
