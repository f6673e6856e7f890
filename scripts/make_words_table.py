"""Glue for rule tabulate_reasoning_words: paper Table 5. Logic: synergy.report.study_tables / synergy.analysis."""
import polars as pl

from synergy.logs import setup_logging
from synergy.report.study_tables import words_table, write_words_table

setup_logging(snakemake.log[0])
evals = pl.concat([pl.read_parquet(p, columns=["arm", "bench", "response"]) for p in snakemake.input.evals])
long, wide, title = words_table(evals, snakemake.params.arms, snakemake.params.words, snakemake.params.benches,
                                snakemake.params.note)
write_words_table(long, wide, title, snakemake.output.csv, snakemake.output.md)
