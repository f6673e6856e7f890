"""Glue for rule route_answers (a routed arm on one benchmark). Logic: synergy.routing (route; choose_threshold
on the tune set's samples when the arm has one)."""
import logging

import polars as pl

from synergy.io import write_parquet
from synergy.logs import setup_logging
from synergy.routing import choose_threshold, route, sweep

setup_logging(snakemake.log[0])
p = snakemake.params.routing
fast, slow = pl.read_parquet(snakemake.input.fast), pl.read_parquet(snakemake.input.slow)
scores = pl.read_parquet(snakemake.input.scores) if "scores" in snakemake.input.keys() else None  # signal confidence
if p.get("tune_set"):
    tune_scores = pl.read_parquet(snakemake.input.tune_scores) if "tune_scores" in snakemake.input.keys() else None
    p["threshold"], tuned = choose_threshold(pl.read_parquet(snakemake.input.tune_fast),
                                             pl.read_parquet(snakemake.input.tune_slow), p["candidates"],
                                             names=(p["fast"], p["slow"]), signal=p["signal"], scores=tune_scores)
    for row in tuned.iter_rows(named=True):
        logging.info("tune set %s, threshold %.2f: accuracy %.1f%%, tokens per question %.1f, %.0f%% to %s%s",
                     p["tune_set"], row["threshold"], row["accuracy"], row["tokens_per_question"],
                     100 * row["share_to_slow"], p["slow"], "  <- chosen" if row["chosen"] else "")
out = route(fast, slow, arm=snakemake.wildcards.arm, threshold=p["threshold"], signal=p["signal"],
            names=(p["fast"], p["slow"]), scores=scores)
per_q = out.group_by("id").agg(pl.col("routed_to").first(), pl.col("routing_tokens").first(), pl.col("correct").mean())
to_slow = int((per_q["routed_to"] == p["slow"]).sum())
logging.info("%s: %d questions, %d answered by %s (%s >= %g), %d by %s; accuracy %.1f%% (%s %.1f%%, %s %.1f%%); "
             "tokens generated per question %.1f", snakemake.wildcards.bench, per_q.height, per_q.height - to_slow,
             p["fast"], p["signal"], p["threshold"], to_slow, p["slow"], 100 * out["correct"].mean(), p["fast"],
             100 * fast["correct"].mean(), p["slow"], 100 * slow["correct"].mean(), per_q["routing_tokens"].mean())
for row in sweep(fast, slow, [0.0, 0.25, 0.5, 0.75, 1.0], names=(p["fast"], p["slow"]), signal=p["signal"],
                 scores=scores).iter_rows(named=True):
    logging.info("threshold %.2f: accuracy %.1f%%, tokens per question %.1f, %.0f%% of questions to %s", row["threshold"],
                 row["accuracy"], row["tokens_per_question"], 100 * row["share_to_slow"], p["slow"])
write_parquet(out.to_arrow(), snakemake.output[0])
