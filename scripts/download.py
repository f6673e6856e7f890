"""Glue for rules download_dataset / download_model. Logic: synergy.data.loaders.hub.download."""
from synergy.data.loaders.hub import download
from synergy.logs import setup_logging

setup_logging(snakemake.log[0])
d = snakemake.params.download
download(d["repo_id"], snakemake.output[0], repo_type=snakemake.params.repo_type, revision=d["revision"],
         allow_patterns=d["allow_patterns"])
