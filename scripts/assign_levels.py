"""Glue for rule assign_levels. Logic: synergy.difficulty.levels_from_samples / levels_from_tags."""
import logging

import polars as pl

from synergy.difficulty import levels_from_samples, levels_from_tags
from synergy.io import read_rows, write_parquet
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
n, thresholds = snakemake.params.num_samples, snakemake.params.thresholds
parts = []
if snakemake.input.samples:  # levels: measured (paper §2.3)
    samples = pl.concat([pl.read_parquet(p) for p in snakemake.input.samples])
    parts.append(levels_from_samples(samples, n, thresholds).with_columns(level_source=pl.lit("measured")))
for path in snakemake.input.tagged:  # levels: paper (the tag of the paper's difficulty-tagged copies)
    parts.append(levels_from_tags(read_rows(path), n, thresholds).with_columns(level_source=pl.lit("paper")))
levels = pl.concat(parts)
logging.info("levels of %d questions: %s", levels.height, dict(levels["level"].value_counts().sort("level").iter_rows()))
write_parquet(levels.to_arrow(), snakemake.output[0])
