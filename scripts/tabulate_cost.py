"""Glue for rule tabulate_cost: results/<study>/tables/cost.{csv,md}. Logic: synergy.report.cost (docs/cost.md)."""
import logging
import os
import time
from pathlib import Path

from synergy.logs import setup_logging
from synergy.report.cost import read_sacct, tabulate_cost

setup_logging(snakemake.log[0])
oldest = min(Path(p).stat().st_mtime for p in snakemake.input.jobs)
sacct = read_sacct(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(oldest - 86400)))
logging.info("sacct: %s", "not available; every number from the benchmark files" if sacct is None
             else f"{len(sacct)} allocations since a day before the oldest job")
table = tabulate_cost(snakemake.params.graph, snakemake.output.csv, snakemake.output.md, sacct=sacct,
                      study=snakemake.wildcards.study, workdir=os.getcwd())
logging.info("cost of %d arms written; sources: %s", table.height - 1, sorted(set(table["source"])))
