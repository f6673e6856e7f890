"""Glue for rule sample_train_pass_rates: the base model's G rollouts on training queries (paper §2.2)."""
from synergy.config import GRPOSettings, GradingConfig, PromptConfig
from synergy.generate import SamplingConfig
from synergy.io import write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.sampling import sample_file

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
g = GRPOSettings.from_dict(snakemake.params.grpo, "grpo")  # the rollout settings of the RL arms
sampling = SamplingConfig(n=g.num_generations, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                          max_new_tokens=g.max_new_tokens, seed=snakemake.params.seed)
df = sample_file(snakemake.input.model, snakemake.input.bench, sampling, reasoning=g.reasoning_instruction,
                 timeout_s=GradingConfig.from_dict(snakemake.params.grading).timeout_s,
                 image_position=PromptConfig.from_dict(snakemake.params.prompt).image_position)
write_parquet(df.to_arrow(), snakemake.output[0])
