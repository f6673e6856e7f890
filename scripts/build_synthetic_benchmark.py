"""Glue for rule build_synthetic_benchmark. Logic: synergy.data.suite.build_benchmark."""
import logging

from synergy.config import SetSpec, SyntheticConfig
from synergy.data.schema import to_table
from synergy.data.suite import build_benchmark, summarize
from synergy.io import write_parquet
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
spec = SetSpec.from_dict(snakemake.params.spec, "benchmark")
syn = SyntheticConfig.from_dict(snakemake.params.synthetic, "synthetic")
rows = build_benchmark(spec.name, spec.num_questions, spec.templates, seed=syn.seed, image_size=syn.image_size,
                       max_objects=syn.max_objects)
logging.info("%s: %d questions: %s", spec.name, len(rows), summarize(rows))
write_parquet(to_table(rows), snakemake.output[0])
