"""Glue for rule scorecard. Logic: synergy.scorecard.card (the numbers), synergy.report.scorecard (the files)."""
import polars as pl

from synergy.logs import setup_logging
from synergy.scorecard.card import pooled_levels, scorecard
from synergy.report.scorecard import write_scorecard

setup_logging(snakemake.log[0])
arm, base, study_arms = snakemake.wildcards.arm, snakemake.params.base, list(snakemake.params.study_arms)
if base is None:
    raise ValueError("a scorecard measures gains over the base model: the study has no arm of kind base")
evals = pl.concat([pl.read_parquet(p) for p in snakemake.input.evals], how="diagonal_relaxed")
levels = pl.read_parquet(snakemake.input.levels)
card = scorecard(evals, levels, arm, base, study_arms, words=snakemake.params.words, **snakemake.params.bootstrap)
profiles = pooled_levels(evals, levels, [arm, *study_arms])
write_scorecard(card, profiles, arm, base, dict(snakemake.params.facts),
                {"csv": snakemake.output.csv, "md": snakemake.output.md, "pdf": snakemake.output.pdf})
