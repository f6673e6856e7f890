"""Glue for rule merge_models (paper §3.3). Logic: synergy.merge.merge_models."""
import logging

from synergy.logs import setup_logging
from synergy.merge import MergeSettings, merge_models

setup_logging(snakemake.log[0])
settings = MergeSettings(**snakemake.params.settings)
step = 50  # progress line every 50 tensors
merge_models(snakemake.input.rl, snakemake.input.sft, snakemake.output.model, settings,
             base_dir=snakemake.input.get("base"),
             progress=lambda done, total: done % step == 0 and logging.info("%d/%d tensors merged", done, total))
