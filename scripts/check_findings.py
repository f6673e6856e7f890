"""Glue for rule check_findings: the paper's claims F1-F14 with verdicts. Logic: synergy.findings (docs/findings.md)."""
import numpy as np
import polars as pl

from synergy.findings import FindingsConfig, check_findings, paper_holds
from synergy.logs import setup_logging
from synergy.report.tables import write_table

import logging

setup_logging(snakemake.log[0])
log = logging.getLogger("synergy.findings")
p = snakemake.params
evals = pl.concat([pl.read_parquet(f) for f in snakemake.input.evals], how="diagonal_relaxed") \
    if snakemake.input.evals else None
entropy = {}
for arm, path in zip(p.entropy_arms, snakemake.input.logs):
    steps = pl.read_parquet(path).sort("step")["entropy"].drop_nulls().to_numpy()
    entropy[arm] = np.asarray(steps[len(steps) - max(1, len(steps) // 4):], dtype=float)   # the last quarter of the run
table = check_findings(evals, pl.read_parquet(snakemake.input.levels), p.roles, FindingsConfig.from_dict(p.settings, "findings"),
                       words=p.words, entropy=entropy, merge_sweep=[tuple(x) for x in p.merge_sweep], **p.bootstrap)
counts = table["verdict"].value_counts(sort=True)
log.info("findings: %s", ", ".join(f"{v} {n}" for v, n in counts.iter_rows()))
for row in table.iter_rows(named=True):
    log.info("%s %s: %s (%s)", row["claim"], row["verdict"], row["statement"], row["detail"])
write_table(table, snakemake.output.csv, snakemake.output.md,
            title=f"Findings: which of the paper's claims this study shows ({paper_holds(table)} of "
                  f"{table['claim'].str.starts_with('F').sum()} hold)")
