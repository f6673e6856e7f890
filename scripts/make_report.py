"""Glue for rule make_report: results/<study>/figures/all.pdf, every table and figure. Logic: synergy.report.pdf."""
import logging

from synergy.logs import setup_logging
from synergy.report.pdf import build_report

setup_logging(snakemake.log[0])
pages = build_report(snakemake.output[0], snakemake.params.info, snakemake.params.pages)
logging.getLogger("synergy.report").info("wrote %s: %d pages", snakemake.output[0], pages)
