"""Glue for rules score_confidence and score_confidence_tune: a fast arm's log-probs of its own samples (the
routed arm's confidence signal, docs/routing.md §1). Logic: synergy.routing_scores.response_logprobs."""
import polars as pl

from synergy.config import PromptConfig
from synergy.io import read_rows, write_parquet
from synergy.logs import set_threads, setup_logging
from synergy.models import set_job_trust_remote_code
from synergy.generate import get_backend
from synergy.routing_scores import response_logprobs

setup_logging(snakemake.log[0])
set_job_trust_remote_code(snakemake.params.trust_remote_code)
set_threads(snakemake.threads)
prompt = PromptConfig.from_dict(snakemake.params.prompt)
# the hf backend's load: on the job's GPU when it has one (bf16), else the CPU (fp32), images capped as evaluated
model, processor = get_backend("hf").load(snakemake.input.model, max_pixels=prompt.max_pixels)
scores = response_logprobs(model, processor, read_rows(snakemake.input.bench), pl.read_parquet(snakemake.input.evals),
                           reasoning=snakemake.params.reasoning, image_position=prompt.image_position,
                           max_pixels=prompt.max_pixels, path=snakemake.input.bench)
write_parquet(scores.to_arrow(), snakemake.output[0])
