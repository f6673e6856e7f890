"""Glue for rule tabulate_judge. Logic: synergy.judge.judge_effect (scores with and without the judge)."""
import polars as pl

from synergy.judge import judge_effect
from synergy.logs import setup_logging
from synergy.report.tables import write_table

setup_logging(snakemake.log[0])
table = judge_effect(pl.concat([pl.read_parquet(p) for p in snakemake.input], how="diagonal_relaxed"))
write_table(table, snakemake.output.csv, snakemake.output.md,
            title="Accuracy (%) by the rules alone and with the LLM judge (paper §2.4)")
