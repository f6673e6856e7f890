"""Glue for rule evaluate. Logic: synergy.sampling.sample_file (paper §2.4: k samples per question)."""
import polars as pl

from synergy.config import EvalConfig, GradingConfig, PromptConfig
from synergy.generate import SamplingConfig
from synergy.io import write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.sampling import sample_file

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
prompt = PromptConfig.from_dict(snakemake.params.prompt)
cfg = EvalConfig.from_dict(snakemake.params.evaluation, "evaluation")
df = sample_file(snakemake.input.model, snakemake.input.bench,
                 SamplingConfig(n=cfg.num_samples, seed=snakemake.params.seed, **cfg.sampling.to_dict()),
                 reasoning=snakemake.params.reasoning, timeout_s=GradingConfig.from_dict(snakemake.params.grading).timeout_s,
                 image_position=prompt.image_position, shard=tuple(snakemake.params.shard),
                 backend=cfg.backend, vllm=snakemake.params.vllm, max_pixels=prompt.max_pixels)
write_parquet(df.with_columns(pl.lit(snakemake.wildcards.arm).alias("arm")).to_arrow(), snakemake.output[0])
