"""Glue for rule train_sft. Logic: synergy.train.sft_trainer.train_sft, one process per GPU (synergy.launch)."""
from synergy.config import PromptConfig, SFTSettings
from synergy.io import read_rows
from synergy.launch import run_trainer
from synergy.logs import set_threads, setup_logging
from synergy.resources import gpu_processes

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
run_trainer("sft", processes=gpu_processes(snakemake.resources), threads=snakemake.threads, log_file=snakemake.log[0],
            init_dir=snakemake.input.init, rows=read_rows(snakemake.input.data), out_dir=snakemake.output.model,
            log_path=snakemake.output.log, state_dir=snakemake.params.state_dir,
            cfg=SFTSettings.from_dict(snakemake.params.settings, f"sft ({snakemake.wildcards.arm})"),
            image_position=PromptConfig.from_dict(snakemake.params.prompt).image_position, seed=snakemake.params.seed)
