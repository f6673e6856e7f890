"""Glue for rule make_figure: one figure of the paper as a PDF. Logic: synergy.report.figures."""
from synergy.logs import setup_logging
from synergy.report import figures

setup_logging(snakemake.log[0])
spec = snakemake.params.spec
inputs = {k: snakemake.input[k] for k in snakemake.input.keys() if k != "code"}
figures.draw(spec, figures.read_inputs(spec["kind"], inputs), snakemake.output[0])
