"""Glue for rule tabulate_level_gain: per-level gains with bootstrap intervals. Logic: synergy.report.study_tables."""
import polars as pl

from synergy.logs import setup_logging
from synergy.report.study_tables import level_gain_table
from synergy.report.tables import write_table

setup_logging(snakemake.log[0])
evals = pl.concat([pl.read_parquet(p) for p in snakemake.input.evals], how="diagonal_relaxed") if snakemake.input.evals \
    else pl.DataFrame(schema={"arm": pl.String, "bench": pl.String, "id": pl.String, "correct": pl.Boolean,
                              "num_tokens": pl.Int64, "truncated": pl.Boolean})
table, title = level_gain_table(evals, pl.read_parquet(snakemake.input.levels), snakemake.params.pairs,
                                **snakemake.params.bootstrap)
write_table(table, snakemake.output.csv, snakemake.output.md, title=title)
