"""Glue for rule assign_levels. Logic: synergy.difficulty.levels_from_samples."""
import logging

import polars as pl

from synergy.difficulty import levels_from_samples
from synergy.io import write_parquet
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
samples = pl.concat([pl.read_parquet(p) for p in snakemake.input])
levels = levels_from_samples(samples, snakemake.params.num_samples, snakemake.params.thresholds)
logging.info("levels of %d questions: %s", levels.height, dict(levels["level"].value_counts().sort("level").iter_rows()))
write_parquet(levels.to_arrow(), snakemake.output[0])
