"""Glue for rules gather_difficulty and gather_eval. Logic: synergy.shards.gather (sharded generation)."""
import logging

import polars as pl

from synergy.io import write_parquet
from synergy.logs import setup_logging
from synergy.shards import gather

setup_logging(snakemake.log[0])
log = logging.getLogger("synergy.shards")
ids = pl.read_parquet(snakemake.input.bench, columns=["id"])["id"].to_list()
shards = list(snakemake.input.shards)
df = gather([pl.read_parquet(p) for p in shards], ids, names=shards)
write_parquet(df.to_arrow(), snakemake.output[0])
log.info("gathered %d shards: %d rows for %d questions -> %s", len(shards), df.height, len(ids), snakemake.output[0])
