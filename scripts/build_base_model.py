"""Glue for rule build_base_model. Logic: synergy.pretrain.pretrain_tiny_model."""
from synergy.config import BaseModelConfig, PromptConfig
from synergy.io import read_rows
from synergy.logs import set_threads, setup_logging
from synergy.pretrain import pretrain_tiny_model

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
base = BaseModelConfig.from_dict(snakemake.params.base_model, "base_model")
if base.source != "tiny":
    raise ValueError(f"rule build_base_model builds the tiny model only; base_model.source is {base.source!r}")
corpus = [row for path in snakemake.input.corpus for row in read_rows(path)]
pretrain_tiny_model(read_rows(snakemake.input.pretrain), corpus, snakemake.output[0], tiny=base.tiny, cfg=base.pretrain,
                    image_size=snakemake.params.image_size,
                    image_position=PromptConfig.from_dict(snakemake.params.prompt).image_position)
