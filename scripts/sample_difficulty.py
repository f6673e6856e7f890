"""Glue for rule sample_difficulty. Logic: synergy.sampling.sample_file (paper §2.3: n samples, base model)."""
from synergy.config import PromptConfig, SamplingSettings
from synergy.generate import SamplingConfig
from synergy.io import write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.sampling import sample_file

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
prompt = PromptConfig.from_dict(snakemake.params.prompt)
cfg = snakemake.params.sampling  # synergy.workflow.generation_settings of `difficulty:`
sampling = SamplingSettings.from_dict(cfg["sampling"], "difficulty.sampling")
df = sample_file(snakemake.input.model, snakemake.input.bench,
                 SamplingConfig(n=cfg["num_samples"], seed=snakemake.params.seed, **sampling.to_dict()),
                 reasoning=cfg["reasoning_instruction"], timeout_s=snakemake.params.timeout_s,
                 image_position=prompt.image_position, shard=tuple(snakemake.params.shard),
                 backend=cfg["backend"], vllm=snakemake.params.vllm, max_pixels=prompt.max_pixels)
write_parquet(df.to_arrow(), snakemake.output[0])
