"""Glue for rule build_mixing_set (paper §3.2). Logic: synergy.sampling.sample_file + synergy.mixing.mix_rows."""
import json

from synergy.config import MixingConfig
from synergy.data.schema import to_table
from synergy.generate import SamplingConfig
from synergy.io import read_rows, write_parquet, write_text
from synergy.logs import set_threads, setup_logging
from synergy.mixing import mix_rows
from synergy.sampling import sample_file

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
cfg = MixingConfig.from_dict(snakemake.params.mixing, "mixing")
samples = sample_file(snakemake.input.model, snakemake.input.data,
                      SamplingConfig(n=cfg.samples_per_question, seed=snakemake.params.seed, **cfg.sampling.to_dict()),
                      reasoning=cfg.reasoning_instruction, timeout_s=snakemake.params.timeout_s,
                      image_position=snakemake.params.image_position, max_pixels=snakemake.params.max_pixels)
rows, composition = mix_rows(read_rows(snakemake.input.data), samples)
write_parquet(samples.to_arrow(), snakemake.output.samples)
write_parquet(to_table(rows), snakemake.output.data)
write_text(json.dumps({"source_arm": snakemake.params.source, **composition}, indent=2) + "\n", snakemake.output.summary)
