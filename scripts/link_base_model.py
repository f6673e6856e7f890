"""Glue for rule link_base_model. Logic: synergy.data.loaders.hub.link_model_dir."""
import logging

from synergy.data.loaders.hub import link_model_dir
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
linked = link_model_dir(snakemake.input.model, snakemake.output[0])
logging.info("linked %d files of %s into %s", len(linked), snakemake.input.model, snakemake.output[0])
