"""Glue for rules load_benchmark / load_train_set. Logic: synergy.data.loaders.load_set."""
import logging

from synergy.data.loaders import load_set
from synergy.data.schema import to_table
from synergy.io import write_parquet
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
result = load_set(snakemake.params.spec, snakemake.input.data, seed=snakemake.params.seed)
logging.info("%s from %s: %s", snakemake.params.spec["name"], snakemake.input.data, result.summary())
for rid, reason in result.skipped:
    logging.warning("skipped row %s: %s", rid, reason)
write_parquet(to_table(result.rows), snakemake.output[0])
