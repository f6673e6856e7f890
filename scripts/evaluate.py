"""Glue for rule evaluate. Logic: synergy.sampling.sample_and_grade (paper §2.4: k samples per question)."""
import polars as pl

from synergy.config import EvalConfig, GradingConfig, PromptConfig
from synergy.generate import SamplingConfig
from synergy.grading import Grader
from synergy.io import read_rows, write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.models import load_model
from synergy.sampling import sample_and_grade

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
cfg = EvalConfig.from_dict(snakemake.params.evaluation, "evaluation")
sampling = SamplingConfig(n=cfg.num_samples, seed=snakemake.params.seed, **cfg.sampling.to_dict())
model, processor = load_model(snakemake.input.model)
with Grader(GradingConfig.from_dict(snakemake.params.grading).timeout_s) as grader:
    df = sample_and_grade(model, processor, read_rows(snakemake.input.bench), sampling, grader=grader,
                          reasoning=snakemake.params.reasoning, path=snakemake.input.bench,
                          image_position=PromptConfig.from_dict(snakemake.params.prompt).image_position)
write_parquet(df.with_columns(pl.lit(snakemake.wildcards.arm).alias("arm")).to_arrow(), snakemake.output[0])
