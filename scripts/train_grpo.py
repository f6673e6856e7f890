"""Glue for rule train_grpo. Logic: synergy.train.grpo (train_grpo; drop_easy_questions §2.2; zero_pass_ids §3.1),
one process per GPU (synergy.launch)."""
import logging

import polars as pl

from synergy.config import GRPOSettings, GradingConfig
from synergy.data.schema import validate_rows
from synergy.io import read_rows
from synergy.launch import run_trainer
from synergy.logs import set_threads, setup_logging
from synergy.resources import gpu_processes
from synergy.train.sft_epochs import kept_epoch_dir
from synergy.train.grpo import drop_easy_questions, zero_pass_ids

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
cfg = GRPOSettings.from_dict(snakemake.params.settings, f"grpo ({snakemake.wildcards.arm})")
grading = GradingConfig.from_dict(snakemake.params.grading)
rows = read_rows(snakemake.input.data)
validate_rows(rows, snakemake.input.data)  # a bad row fails here, naming the row id and the file
if cfg.drop_easy:
    rows, dropped = drop_easy_questions(rows, pl.read_parquet(snakemake.input.base_samples), cfg.num_generations)
    logging.info("dropped %d queries the base model solved in all %d rollouts; %d remain", dropped,
                 cfg.num_generations, len(rows))
zero = None
if cfg.hybrid != "none" and cfg.zero_pass == "offline":  # paper §3.1: zero pass rate from the base model's rollouts
    zero = zero_pass_ids(pl.read_parquet(snakemake.input.base_samples), cfg.num_generations)
init_dir = snakemake.input.init
if snakemake.params.init_epoch is not None:  # start from a kept epoch of the init arm
    init_dir = kept_epoch_dir(init_dir, snakemake.params.init_epoch)
    logging.info("starting from epoch %d of %s: %s", snakemake.params.init_epoch, snakemake.input.init, init_dir)
run_trainer("grpo", processes=gpu_processes(snakemake.resources), threads=snakemake.threads, log_file=snakemake.log[0],
            init_dir=init_dir, rows=rows, out_dir=snakemake.output.model, log_path=snakemake.output.log,
            state_dir=snakemake.params.state_dir, cfg=cfg, seed=snakemake.params.seed, zero_pass=zero,
            image_position=snakemake.params.image_position, max_pixels=snakemake.params.max_pixels,
            grading_timeout_s=grading.timeout_s, grading_max_failure_share=grading.max_failure_share,
            vllm=snakemake.params.vllm)
