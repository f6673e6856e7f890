"""Glue for rule tabulate_routing: every routed arm's accuracy and cost at each threshold. Logic: synergy.routing."""
import polars as pl

from synergy.logs import setup_logging
from synergy.report.tables import write_table
from synergy.routing import sweep_table

setup_logging(snakemake.log[0])


def rows(paths):
    return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")


parts = []
for arm, p in snakemake.params.routing.items():
    files = snakemake.params.files[arm]
    tune = (pl.read_parquet(files["tune_fast"]), pl.read_parquet(files["tune_slow"])) if "tune_fast" in files else None
    scores = rows(files["scores"]) if "scores" in files else None  # the confidence signal's scores
    tune_scores = pl.read_parquet(files["tune_scores"]) if "tune_scores" in files else None
    parts.append(sweep_table(arm, p, (rows(files["fast"]), rows(files["slow"])), tune, scores, tune_scores))
write_table(pl.concat(parts), snakemake.output.csv, snakemake.output.md, title=snakemake.params.title)
