"""Glue for rule tabulate_arms: Tables 1-3, 6, 7, the merge grid and level_accuracy. Logic: synergy.report.tables."""
import polars as pl

from synergy.logs import setup_logging
from synergy.report.tables import build_arm_table, write_table

setup_logging(snakemake.log[0])
evals = pl.concat([pl.read_parquet(p) for p in snakemake.input.evals], how="diagonal_relaxed")
table, title = build_arm_table(snakemake.wildcards.table, evals, pl.read_parquet(snakemake.input.levels),
                               arms=snakemake.params.arms, benches=snakemake.params.benches,
                               arm_specs=snakemake.params.arm_specs, train_sets=snakemake.params.train_sets,
                               merge_cells=snakemake.params.merge_cells)
write_table(table, snakemake.output.csv, snakemake.output.md, title=title)
