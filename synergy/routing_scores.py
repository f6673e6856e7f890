"""The routed arm's ``confidence`` signal: how probable the fast arm finds its own samples (beyond the paper).

The paper (§4) leaves open how to keep SFT's gains on hard questions without its losses on easy ones; a routed
arm (synergy/routing.py, docs/routing.md §1) answers with the fast arm when a signal says the question is easy.
This module scores each of the fast arm's evaluation samples under the fast arm's own model: the mean log-prob
of the sample's response tokens, teacher-forced after the prompt exactly as evaluation built it
(``synergy.prompts.build_prompt``, chat-templated with the generation prompt as ``synergy.generate.hf`` does).
``synergy.routing`` turns it into the per-question signal: the mean over the k samples of exp(mean log-prob),
a geometric-mean token probability in (0, 1]; an empty response scores null here and counts as 0 there.

Deviations, documented in docs/routing.md §1:
- the response is re-tokenized from its text with the model's tokenizer (the evaluation keeps the text, not the
  sampled ids); in rare cases the tokens differ from the sampled ones (a different but equivalent split);
- no end-of-sequence token is scored: only the response text's tokens;
- the log-probs are of the raw model distribution (temperature 1, no top-p / top-k), not of the sampling
  distribution the samples were drawn from.

Cost: one teacher-forced forward per sample (prompt + response), no generation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import polars as pl
import torch

from synergy.data.schema import validate_rows
from synergy.generate.hf import prompt_texts
from synergy.prompts import build_prompt
from synergy.train.losses import token_logprobs

log = logging.getLogger("synergy.routing_scores")

SCORE_SCHEMA = {"bench": pl.String, "id": pl.String, "sample": pl.Int32, "mean_logprob": pl.Float64,
                "tokens": pl.Int32}


def _device(model) -> torch.device:
    return next(model.parameters()).device


def with_response(extra: dict, prompt_len: int, response_len: int, device) -> dict:
    """The processor's other outputs for prompt + response: per-token ones (``mm_token_type_ids``: the kind of each
    token) grow by ``response_len`` zeros (text); the rest (pixel values, image grids) stay as they are."""
    out = {}
    for k, v in extra.items():
        if v.dim() == 2 and v.shape == (1, prompt_len):
            v = torch.cat([v, torch.zeros(1, response_len, dtype=v.dtype)], dim=1)
        out[k] = v.to(device)
    return out


@torch.no_grad()
def response_logprobs(model, processor, rows: Sequence[Mapping], evals: pl.DataFrame, *, reasoning: bool,
                      image_position: str, max_pixels: int | None = None, path: str | None = None) -> pl.DataFrame:
    """Mean log-prob of each evaluation sample's response tokens under ``model`` (see SCORE_SCHEMA).

    ``rows``: the benchmark's canonical rows (every question of ``evals`` must be among them); ``evals``: the
    evaluation rows (bench, id, sample, response). ``max_pixels`` is already applied by the processor that
    ``synergy.models.load_model(..., max_pixels=...)`` returned; it is taken here only to log it.
    One output row per evaluation row, in its order; an empty response gives ``mean_logprob`` null, 0 tokens.
    """
    validate_rows(rows, path)
    by_id = {r["id"]: r for r in rows}
    missing = sorted(set(evals["id"].to_list()) - set(by_id))
    if missing:
        raise ValueError(f"{len(missing)} evaluated questions are not in the benchmark file {path or ''} "
                         f"(e.g. {missing[:3]}): score the evaluation of this benchmark against its own file")
    tok = processor.tokenizer
    device = _device(model)
    start = time.monotonic()
    records = []
    for (bench, qid), g in evals.group_by(["bench", "id"], maintain_order=True):
        prompt = build_prompt(by_id[qid], reasoning, image_position, path)
        text = prompt_texts(processor, [prompt])[0]
        enc = processor(text=[text], images=prompt.images or None, return_tensors="pt")
        prompt_ids = enc.pop("input_ids")
        enc.pop("attention_mask", None)
        extra = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        for sample, response in zip(g["sample"].to_list(), g["response"].to_list()):
            ids = tok(response or "", add_special_tokens=False)["input_ids"]
            if not ids:
                records.append({"bench": bench, "id": qid, "sample": sample, "mean_logprob": None, "tokens": 0})
                continue
            resp = torch.tensor([ids], dtype=prompt_ids.dtype)
            input_ids = torch.cat([prompt_ids, resp], dim=1).to(device)
            mask = torch.ones_like(input_ids)
            cmask = torch.zeros_like(input_ids)
            cmask[:, prompt_ids.shape[1]:] = 1
            logp, _ = token_logprobs(model, input_ids, mask, cmask,
                                     model_kwargs=with_response(extra, prompt_ids.shape[1], len(ids), device))
            records.append({"bench": bench, "id": qid, "sample": sample,
                            "mean_logprob": float(logp[cmask.bool()].mean()), "tokens": len(ids)})
    df = pl.DataFrame(records, schema=SCORE_SCHEMA)
    log.info("%d samples of %d questions scored in %.1f s (max_pixels %s): mean log-prob %.3f, %d empty",
             df.height, evals.select("bench", "id").n_unique() if evals.height else 0, time.monotonic() - start,
             max_pixels, df["mean_logprob"].mean() if df.height else float("nan"), int(df["mean_logprob"].is_null().sum()))
    return df
