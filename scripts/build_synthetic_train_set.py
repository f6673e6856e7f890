"""Glue for rule build_synthetic_train_set. Logic: synergy.data.suite.build_train_set."""
import logging

from synergy.config import SetSpec, SyntheticConfig
from synergy.data.schema import to_table
from synergy.data.suite import build_train_set, question_keys, summarize
from synergy.io import read_rows, write_parquet
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
spec = SetSpec.from_dict(snakemake.params.spec, "train_set")
syn = SyntheticConfig.from_dict(snakemake.params.synthetic, "synthetic")
exclude = set().union(*(question_keys(read_rows(p)) for p in snakemake.input.benchmarks))
rows = build_train_set(spec.name, spec.num_questions, snakemake.params.templates, style=spec.style,
                       modality=spec.modality, seed=syn.seed, image_size=syn.image_size, max_objects=syn.max_objects,
                       exclude=exclude, error_rate=spec.error_rate, reasoning_share=spec.reasoning_share,
                       text_share=spec.text_share, scene_view=spec.scene_view,
                       survey_share=spec.survey_share)
logging.info("%s: %d rows (%s, %s), disjoint from %d benchmark questions: %s", spec.name, len(rows), spec.style,
             spec.modality, len(exclude), summarize(rows))
write_parquet(to_table(rows), snakemake.output[0])
