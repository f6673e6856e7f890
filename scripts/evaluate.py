"""Glue for rule evaluate. Logic: synergy.sampling.sample_files (paper §2.4: k samples per question).

One job covers one benchmark (or one shard of it), or every benchmark of an arm (evaluation.per_job: arm):
inputs, seeds and outputs come in the same benchmark order.
"""
import polars as pl

from synergy.config import PromptConfig, SamplingSettings
from synergy.generate import SamplingConfig
from synergy.io import write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.models import set_job_trust_remote_code
from synergy.sampling import sample_files

setup_logging(snakemake.log[0])
set_job_trust_remote_code(snakemake.params.trust_remote_code)
set_threads(snakemake.threads)
prompt = PromptConfig.from_dict(snakemake.params.prompt)
cfg = snakemake.params.sampling  # synergy.workflow.generation_settings of `evaluation:`
sampling = SamplingSettings.from_dict(cfg["sampling"], "evaluation.sampling")
benches = list(snakemake.input.bench)
seeds = list(snakemake.params.seed)
if not len(benches) == len(seeds) == len(snakemake.output):
    raise ValueError(f"evaluate job: {len(benches)} benchmarks, {len(seeds)} seeds, {len(snakemake.output)} outputs")
dfs = sample_files(snakemake.input.model, benches,
                   [SamplingConfig(n=cfg["num_samples"], seed=s, **sampling.to_dict()) for s in seeds],
                   reasoning=snakemake.params.reasoning, timeout_s=snakemake.params.timeout_s,
                   image_position=prompt.image_position, shard=tuple(snakemake.params.shard),
                   backend=cfg["backend"], vllm=snakemake.params.vllm, max_pixels=prompt.max_pixels)
for df, out in zip(dfs, snakemake.output):
    write_parquet(df.with_columns(pl.lit(snakemake.wildcards.arm).alias("arm")).to_arrow(), out)
