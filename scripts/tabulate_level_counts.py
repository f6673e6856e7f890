"""Glue for rule tabulate_level_counts. Logic: synergy.difficulty.level_counts."""
import polars as pl

from synergy.difficulty import level_counts
from synergy.logs import setup_logging
from synergy.report.tables import write_table

setup_logging(snakemake.log[0])
table = level_counts(pl.read_parquet(snakemake.input[0]), snakemake.params.benches)
write_table(table, snakemake.output.csv, snakemake.output.md, title="Questions per benchmark and difficulty level")
