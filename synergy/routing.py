"""A routed arm: each question answered by one of two trained arms, chosen by a difficulty signal measured at test time.

Beyond the paper. Its conclusion (paper §4) leaves open how to keep SFT's gains on hard questions without its
losses on easy ones; routing by difficulty is one answer. The signal never reads the gold answer or the base
model's levels. ``agreement`` (the default): the agreement of the fast arm's own k samples (self-consistency),
the share of them that give the most common extracted answer (a sample with no answer agrees with nothing).
``confidence``: the mean over the k samples of exp(mean token log-prob of the sample under the fast arm's own
model), scored by synergy.routing_scores. When the signal is at least ``threshold``, the fast arm's samples
answer the question; otherwise the slow arm's do.

The threshold is a setting, or chosen on held-out questions (``choose_threshold``): both arms sampled on a train
set neither of them trained on, the candidate with the best routed accuracy there is used on the benchmarks;
the benchmarks never choose it.

Cost: the fast arm's samples are always generated (they are the signal); the slow arm's only for the questions
routed to it. Each routed row records the arm that answered (``routed_to``), the signal (``agreement``, and
``confidence`` when that is the signal) and the tokens both arms generated for that question
(``routing_tokens``). docs/routing.md has the definitions and the measured results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import polars as pl

SIGNALS = ("agreement", "confidence")


def agreement(extracted: Sequence[str | None]) -> float:
    """Share of samples that give the most common answer; samples without an answer count as disagreeing."""
    answers = [a for a in extracted if a is not None and a != ""]
    if not extracted:
        raise ValueError("no samples to measure agreement on")
    return (Counter(answers).most_common(1)[0][1] if answers else 0) / len(extracted)


def confidence(scores: pl.DataFrame) -> pl.DataFrame:
    """Per question, the mean over its samples of exp(mean token log-prob) (synergy.routing_scores): a
    geometric-mean token probability in [0, 1]; a sample without a score (an empty response) counts as 0.
    ``scores``: per-sample rows (bench, id, sample, mean_logprob), or per-question rows that already hold
    ``confidence``. Returns (bench, id, confidence)."""
    if "confidence" in scores.columns:
        return scores.select("bench", "id", pl.col("confidence").cast(pl.Float64))
    if "mean_logprob" not in scores.columns:
        raise ValueError(f"confidence scores need a mean_logprob (per sample) or confidence (per question) column; "
                         f"got {scores.columns}")
    return (scores.group_by(["bench", "id"], maintain_order=True)
            .agg(pl.col("mean_logprob").exp().fill_null(0.0).mean().alias("confidence")))


def _signals(fast: pl.DataFrame, signal: str = "agreement", scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per question of the fast arm: ``agreement``, ``fast_tokens`` and ``signal`` (the column routing compares
    with the threshold: ``agreement``, or ``confidence`` from ``scores``)."""
    rows = []
    for (bench, qid), g in fast.group_by(["bench", "id"], maintain_order=True):
        rows.append({"bench": bench, "id": qid, "agreement": agreement(g["extracted"].to_list()),
                     "fast_tokens": int(g["num_tokens"].sum())})
    out = pl.DataFrame(rows, schema={"bench": pl.String, "id": pl.String, "agreement": pl.Float64,
                                     "fast_tokens": pl.Int64})
    if signal == "agreement":
        return out.with_columns(pl.col("agreement").alias("signal"))
    if scores is None:
        raise ValueError(f"routing signal {signal!r} needs the fast arm's scores (synergy.routing_scores); none given")
    if "sample" in scores.columns:
        have = set(zip(scores["bench"], scores["id"], scores["sample"]))
        lack = [k for k in zip(fast["bench"], fast["id"], fast["sample"]) if k not in have]
        if lack:
            raise ValueError(f"{len(lack)} of the fast arm's samples have no {signal} score (e.g. {lack[:3]}): "
                             f"the scores must come from the same evaluation")
        scores = scores.join(fast.select("bench", "id", "sample"), on=["bench", "id", "sample"], how="semi")
    conf = confidence(scores)
    out = out.join(conf, on=["bench", "id"], how="left")
    if out["confidence"].is_null().any():
        lack = out.filter(pl.col("confidence").is_null()).select("bench", "id").rows()[:3]
        raise ValueError(f"questions without a {signal} score (e.g. {lack}): the scores must cover every question")
    return out.with_columns(pl.col("confidence").alias("signal"))


def _check_same_questions(fast: pl.DataFrame, slow: pl.DataFrame, names: tuple[str, str]) -> None:
    qf = set(zip(fast["bench"], fast["id"]))
    qs = set(zip(slow["bench"], slow["id"]))
    if qf != qs:
        only = sorted(qf ^ qs)[:3]
        raise ValueError(f"arms {names[0]!r} and {names[1]!r} evaluated different questions ({len(qf ^ qs)} differ, "
                         f"e.g. {only}): a routed arm needs both on the same benchmark questions")


def route(fast: pl.DataFrame, slow: pl.DataFrame, *, arm: str, threshold: float, signal: str = "agreement",
          names: tuple[str, str] = ("fast", "slow"), scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """The routed arm's evaluation rows: per question, the fast arm's samples when its ``signal`` >= ``threshold``,
    else the slow arm's; columns of the chosen arm's rows plus ``routed_to``, ``agreement``, ``routing_tokens``,
    and ``confidence`` when that is the signal (``scores``: the fast arm's per-sample scores, see ``confidence``)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown routing signal {signal!r}; known: {list(SIGNALS)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"routing threshold must be in [0, 1], got {threshold}")
    _check_same_questions(fast, slow, names)
    sig = _signals(fast, signal, scores).with_columns((pl.col("signal") >= threshold).alias("_to_fast"))
    slow_tokens = slow.group_by(["bench", "id"]).agg(pl.col("num_tokens").sum().alias("slow_tokens"))
    sig = sig.join(slow_tokens, on=["bench", "id"], how="left").with_columns(
        pl.when(pl.col("_to_fast")).then(pl.lit(names[0])).otherwise(pl.lit(names[1])).alias("routed_to"),
        (pl.col("fast_tokens") + pl.when(pl.col("_to_fast")).then(0).otherwise(pl.col("slow_tokens")))
        .alias("routing_tokens"))
    recorded = ["agreement", *(["confidence"] if signal == "confidence" else [])]
    keep = sig.select("bench", "id", "_to_fast", "routed_to", *recorded, "routing_tokens")
    a = fast.join(keep.filter(pl.col("_to_fast")), on=["bench", "id"], how="inner")
    b = slow.join(keep.filter(~pl.col("_to_fast")), on=["bench", "id"], how="inner")
    order = fast.select("bench", "id").unique(maintain_order=True).with_row_index("_q")
    out = pl.concat([a, b], how="diagonal_relaxed").join(order, on=["bench", "id"]).sort("_q", "sample")
    return out.drop("_to_fast", "_q").with_columns(pl.lit(arm).alias("arm"))


def sweep(fast: pl.DataFrame, slow: pl.DataFrame, thresholds: Sequence[float],
          names: tuple[str, str] = ("fast", "slow"), signal: str = "agreement",
          scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Accuracy (%) and generated tokens per question of the routed arm at each threshold (the trade-off)."""
    out = []
    for t in thresholds:
        r = route(fast, slow, arm="sweep", threshold=t, names=names, signal=signal, scores=scores)
        per_q = r.group_by(["bench", "id"]).agg(pl.col("correct").mean(), pl.col("routing_tokens").first(),
                                                 (pl.col("routed_to") == names[1]).first().alias("to_slow"))
        out.append({"threshold": float(t), "accuracy": 100 * float(per_q["correct"].mean()),
                    "tokens_per_question": float(per_q["routing_tokens"].mean()),
                    "share_to_slow": float(per_q["to_slow"].mean())})
    return pl.DataFrame(out)


def choose_threshold(fast: pl.DataFrame, slow: pl.DataFrame, candidates: Sequence[float],
                     names: tuple[str, str] = ("fast", "slow"), signal: str = "agreement",
                     scores: pl.DataFrame | None = None) -> tuple[float, pl.DataFrame]:
    """The threshold of ``candidates`` with the best routed accuracy on held-out questions (``fast`` and ``slow``:
    both arms' samples of a tune set neither trained on); a tie goes to the one that generates fewer tokens, then
    to the lower threshold. Returns it and the sweep over every candidate (``chosen`` marks it)."""
    table = sweep(fast, slow, sorted(set(candidates)), names=names, signal=signal, scores=scores)
    best = table.sort(["accuracy", "tokens_per_question", "threshold"], descending=[True, False, False]).row(0, named=True)
    return best["threshold"], table.with_columns((pl.col("threshold") == best["threshold"]).alias("chosen"))


def sweep_table(arm: str, params: dict, bench: tuple[pl.DataFrame, pl.DataFrame],
                tune: tuple[pl.DataFrame, pl.DataFrame] | None, bench_scores: pl.DataFrame | None = None,
                tune_scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """One routed arm's trade-off at each threshold (the routing_sweep table): on its tune set, where the threshold
    is chosen, and on the benchmarks pooled, where it is only measured. ``params``: synergy.workflow.routing_params
    of the arm; ``bench`` / ``tune``: the fast and slow arm's rows there; ``bench_scores`` / ``tune_scores``: the
    fast arm's scores there when the signal needs them. ``chosen`` marks the threshold used."""
    names = (params["fast"], params["slow"])
    signal = params.get("signal", "agreement")
    if tune is not None:
        threshold, tuned = choose_threshold(*tune, params["candidates"], names=names, signal=signal,
                                            scores=tune_scores)
        parts = [tuned.with_columns(pl.lit(f"tune set {params['tune_set']}").alias("split"))]
        grid = sorted(set(params["candidates"]))
    else:
        threshold, parts = params["threshold"], []
        grid = sorted(set(params["candidates"]) | {threshold})
    on_bench = sweep(*bench, grid, names=names, signal=signal, scores=bench_scores).with_columns(
        (pl.col("threshold") == threshold).alias("chosen"), pl.lit("benchmarks").alias("split"))
    out = pl.concat([*parts, on_bench], how="diagonal_relaxed")
    return out.select(pl.lit(arm).alias("arm"), pl.lit(names[0]).alias("fast"), pl.lit(names[1]).alias("slow"),
                      pl.lit(signal).alias("signal"), "split", "threshold", "accuracy", "tokens_per_question",
                      (100 * pl.col("share_to_slow")).alias("percent_to_slow"), "chosen")
