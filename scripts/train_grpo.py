"""Glue for rule train_grpo. Logic: synergy.train.grpo.train_grpo (and drop_easy_questions, paper §2.2), one process
per GPU (synergy.launch)."""
import logging

import polars as pl

from synergy.config import GRPOSettings, GradingConfig, PromptConfig
from synergy.io import read_rows
from synergy.logs import set_threads, setup_logging
from synergy.launch import run_trainer
from synergy.resources import gpu_processes
from synergy.train.grpo import drop_easy_questions

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
cfg = GRPOSettings.from_dict(snakemake.params.settings, f"grpo ({snakemake.wildcards.arm})")
rows = read_rows(snakemake.input.data)
if cfg.drop_easy:
    rows, dropped = drop_easy_questions(rows, pl.read_parquet(snakemake.input.base_samples), cfg.num_generations)
    logging.info("dropped %d queries the base model solved in all %d rollouts; %d remain", dropped,
                 cfg.num_generations, len(rows))
run_trainer("grpo", processes=gpu_processes(snakemake.resources), threads=snakemake.threads, log_file=snakemake.log[0],
            init_dir=snakemake.input.init, rows=rows, out_dir=snakemake.output.model, log_path=snakemake.output.log,
            state_dir=snakemake.params.state_dir, cfg=cfg, seed=snakemake.params.seed,
            image_position=PromptConfig.from_dict(snakemake.params.prompt).image_position,
            grading_timeout_s=GradingConfig.from_dict(snakemake.params.grading).timeout_s)
