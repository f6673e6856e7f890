"""Glue for rule sample_train_pass_rates: the base model's G rollouts on training queries (paper §2.2), sampled
with the rollout settings of the GRPO arms that read them (synergy.workflow.pass_rate_settings)."""
import logging

from synergy.generate import SamplingConfig
from synergy.io import write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.sampling import sample_file

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
r = snakemake.params.rollout
logging.info("rollout settings %s: %s", snakemake.wildcards.rollout, r)
sampling = SamplingConfig(n=r["num_generations"], temperature=r["temperature"], top_p=r["top_p"], top_k=r["top_k"],
                          max_new_tokens=r["max_new_tokens"], seed=snakemake.params.seed)
df = sample_file(snakemake.input.model, snakemake.input.bench, sampling, reasoning=r["reasoning_instruction"],
                 timeout_s=snakemake.params.timeout_s, image_position=snakemake.params.image_position,
                 max_pixels=snakemake.params.max_pixels)
write_parquet(df.to_arrow(), snakemake.output[0])
