"""Glue for rule build_base_model (base_model.source: tiny). Logic: synergy.pretrain.pretrain_tiny_model."""
from synergy.config import PretrainConfig, TinyModelSettings
from synergy.io import read_rows
from synergy.logs import set_threads, setup_logging
from synergy.pretrain import pretrain_tiny_model

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
corpus = [row for path in snakemake.input.corpus for row in read_rows(path)]
pretrain_tiny_model(read_rows(snakemake.input.pretrain), corpus, snakemake.output[0],
                    tiny=TinyModelSettings.from_dict(snakemake.params.tiny, "base_model.tiny"),
                    cfg=PretrainConfig.from_dict(snakemake.params.pretrain, "base_model.pretrain"),
                    image_size=snakemake.params.image_size, image_position=snakemake.params.image_position)
