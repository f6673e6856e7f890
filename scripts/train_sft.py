"""Glue for rule train_sft. Logic: synergy.train.sft_trainer.train_sft, one process per GPU (synergy.launch)."""
import logging

from synergy.config import SFTSettings
from synergy.data.schema import validate_rows
from synergy.io import read_rows
from synergy.launch import run_trainer
from synergy.logs import set_threads, setup_logging
from synergy.mixing import composition_by_origin
from synergy.resources import gpu_processes
from synergy.train.sft_epochs import kept_epoch_dir

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
rows = read_rows(snakemake.input.data)
validate_rows(rows, snakemake.input.data)  # a bad row fails here, naming the row id and the file
logging.info("training rows by origin: %s (%s)", composition_by_origin(rows), snakemake.input.data)
init_dir = snakemake.input.init
if snakemake.params.init_epoch is not None:  # start from a kept epoch of the init arm
    init_dir = kept_epoch_dir(init_dir, snakemake.params.init_epoch)
    logging.info("starting from epoch %d of %s: %s", snakemake.params.init_epoch, snakemake.input.init, init_dir)
run_trainer("sft", processes=gpu_processes(snakemake.resources), threads=snakemake.threads, log_file=snakemake.log[0],
            init_dir=init_dir, rows=rows, out_dir=snakemake.output.model,
            log_path=snakemake.output.log, state_dir=snakemake.params.state_dir,
            cfg=SFTSettings.from_dict(snakemake.params.settings, f"sft ({snakemake.wildcards.arm})"),
            image_position=snakemake.params.image_position, seed=snakemake.params.seed,
            max_pixels=snakemake.params.max_pixels)
