"""Glue for rule judge. Logic: synergy.judge.judge_file (paper §2.4: rules + an LLM judge)."""
from synergy.io import write_parquet
from synergy.judge import JudgeConfig, judge_file
from synergy.logs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
cfg = JudgeConfig.from_dict(snakemake.params.judge, "judge")
df = judge_file(snakemake.input.evals, snakemake.input.bench, snakemake.input.model, cfg, seed=snakemake.params.seed,
                timeout_s=snakemake.params.timeout_s)
write_parquet(df.to_arrow(), snakemake.output[0])
