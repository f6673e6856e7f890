"""Optional LLM judge for answers the rules cannot extract (paper §2.4: rule matching + Qwen2.5-VL-32B).

The paper scores with VLMEvalKit: rule-based matching, and a Qwen2.5-VL-32B judge where the rules
fail. Here the one grader (``synergy.grading``) stays the only arbiter of correctness; the judge
only *extracts* an answer where the grader found none:

1. Judged samples: those whose rule status is in ``statuses`` (default ``no_answer``, ``ambiguous``);
   truncated samples (no end of thinking) only with ``judge_truncated: true``.
2. The judge model reads the question (with its options) and the last ``max_response_chars``
   characters of the response, inside a delimited block, and replies with one verdict line
   ``ANSWER <token>: <final answer>`` (or ``None``); ``synergy.judge_guard`` builds the prompt, parses
   the line strictly and checks that the answer occurs in what the judge read.
3. Its answer is graded by the same grader as ``\\boxed{<answer>}``; ``correct`` becomes that verdict,
   ``correct_rules`` keeps the rules' one. Samples the judge does not see keep the rules' verdict, and
   so do samples whose reply is unusable (``judge_status``: ``unparsed``, ``conflicting``,
   ``ungrounded``) and samples whose response holds text addressed to a judge (``judge_flagged``,
   counted in ``judge_effect``; synergy/judge_guard.py says why and how).

Deviations: the judge sees the response text, not the image (as VLMEvalKit's answer extraction);
the prompt is ours (VLMEvalKit's is GPT-specific and not given in the paper); greedy decoding.
Scores are reported with and without the judge (``judge_effect`` table).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from synergy.config import SamplingSettings, _Section
from synergy.grading import Grader, grade_row
from synergy.judge_guard import frame, grounded, judge_addressed, parse_verdict, verdict_token
from synergy.prompts import Prompt, format_question

log = logging.getLogger("synergy.judge")


@dataclass(frozen=True)
class JudgeModel(_Section):
    path: str | None = None          # hub id (paper §2.4: Qwen/Qwen2.5-VL-32B-Instruct)
    revision: str | None = None
    local_path: str | None = None    # a local model folder instead of the download


@dataclass(frozen=True)
class JudgeConfig(_Section):
    """The ``judge:`` section of a study config."""

    enabled: bool
    model: JudgeModel
    sampling: SamplingSettings
    statuses: tuple[str, ...] = ("no_answer", "ambiguous")
    judge_truncated: bool = False
    max_response_chars: int = 4000


def judge_prompt(row: Mapping, response: str, max_chars: int, token: str) -> Prompt:
    """A text-only chat prompt asking the judge for the final answer of ``response`` to ``row`` (verdict ``token``)."""
    tail = response[-max_chars:] if len(response) > max_chars else response
    text = frame(format_question(row), tail, token)
    return Prompt([{"role": "user", "content": [{"type": "text", "text": text}]}], [])


def to_judge(samples: pl.DataFrame, cfg: JudgeConfig) -> pl.Series:
    """Boolean mask of the samples the judge reads."""
    mask = samples["status"].is_in(list(cfg.statuses))
    if not cfg.judge_truncated:
        mask = mask & ~samples["truncated"]
    return mask


def apply_judge(samples: pl.DataFrame, rows: Mapping[str, Mapping], judge_texts: Sequence[str | None],
                grader: Grader, cfg: JudgeConfig, token: str) -> pl.DataFrame:
    """The samples with ``correct_rules``, ``judged``, ``judge_answer``, ``judge_raw``, ``judge_status``,
    ``judge_flagged``, ``judge_flags`` and the judged ``correct``.

    ``judge_texts`` holds the judge's reply for every sample selected by ``to_judge``, in order, to the
    prompt ``judge_prompt(..., token)``. ``judge_status`` (judged samples): ``ok`` (the judge's answer
    was graded), ``none``, ``unparsed``, ``conflicting``, ``ungrounded`` or ``flagged``; only ``ok``
    changes ``correct``. Every sample is scanned for text addressed to a judge (``judge_flags``: the
    patterns it matched).
    """
    mask = to_judge(samples, cfg).to_list()
    if sum(mask) != len(judge_texts):
        raise ValueError(f"{len(judge_texts)} judge replies for {sum(mask)} judged samples")
    replies = iter(judge_texts)
    correct, answers, raws, statuses, flags = [], [], [], [], []
    for rec, judged in zip(samples.iter_rows(named=True), mask):
        response = rec["response"] or ""
        found = judge_addressed(response)
        flags.append(", ".join(found) if found else None)
        if not judged:
            correct.append(rec["correct"])
            answers.append(None)
            raws.append(None)
            statuses.append(None)
            continue
        raw = next(replies)
        row = rows[rec["id"]]
        ans, status = parse_verdict(raw, token)
        tail = response[-cfg.max_response_chars:]
        if status == "ok" and not grounded(ans, tail, list(row.get("options") or [])):
            status = "ungrounded"
        if status == "ok" and found:
            status = "flagged"
        ok = rec["correct"] if status != "ok" else grade_row(grader, f"\\boxed{{{ans}}}", row).correct
        correct.append(ok)
        answers.append(ans)
        raws.append(raw)
        statuses.append(status)
    return samples.with_columns(
        pl.col("correct").alias("correct_rules"),
        pl.Series("judged", mask, dtype=pl.Boolean),
        pl.Series("judge_answer", answers, dtype=pl.String),
        pl.Series("judge_raw", raws, dtype=pl.String),
        pl.Series("judge_status", statuses, dtype=pl.String),
        pl.Series("judge_flagged", [f is not None for f in flags], dtype=pl.Boolean),
        pl.Series("judge_flags", flags, dtype=pl.String),
        pl.Series("correct", correct, dtype=pl.Boolean),
    )


def judge_file(eval_path: str, bench_path: str, model_dir: str, cfg: JudgeConfig, *, seed: int = 0,
               timeout_s: float = 5.0) -> pl.DataFrame:
    """Judge one arm's samples on one benchmark with the model in ``model_dir``.

    Generation uses the transformers backend on the first GPU (CPU without one), as ``sampling.sample_file``
    does; the model is loaded only when some sample needs the judge.
    """
    from synergy.generate import SamplingConfig, generate
    from synergy.io import read_rows

    samples = pl.read_parquet(eval_path)
    rows = {r["id"]: r for r in read_rows(bench_path)}
    missing = sorted(set(samples["id"]) - set(rows))
    if missing:
        raise ValueError(f"{eval_path}: {len(missing)} sample ids are not questions of {bench_path}, e.g. {missing[0]}")
    picked = samples.filter(to_judge(samples, cfg))
    token = verdict_token(seed)
    prompts = [judge_prompt(rows[r["id"]], r["response"] or "", cfg.max_response_chars, token)
               for r in picked.iter_rows(named=True)]
    texts: list[str] = []
    if prompts:
        import torch

        from synergy.models import load_model

        model, processor = load_model(model_dir, device="cuda" if torch.cuda.is_available() else "cpu")
        sampling = SamplingConfig(n=1, seed=seed, **cfg.sampling.to_dict())
        texts = [outs[0].text for outs in generate(model, processor, prompts, sampling)]
    with Grader(timeout_s) as grader:
        out = apply_judge(samples, rows, texts, grader, cfg, token)
    log.info("%s: judged %d of %d samples; accuracy %.3f by the rules, %.3f with the judge; judge replies %s",
             eval_path, len(prompts), samples.height, out["correct_rules"].mean(), out["correct"].mean(),
             dict(out["judge_status"].drop_nulls().value_counts().iter_rows()))
    flagged = out.filter(pl.col("judge_flagged"))
    if flagged.height:
        first = flagged.row(0, named=True)
        log.warning("%s: %d responses hold text addressed to a judge (flagged; the rules' verdict is kept for "
                    "them), e.g. id %s sample %s: %s", eval_path, flagged.height, first["id"], first["sample"],
                    first["judge_flags"])
    return out


def judge_effect(judged: pl.DataFrame) -> pl.DataFrame:
    """Per (arm, bench): samples, judged, changed to correct, judge replies not used, responses flagged for
    text addressed to a judge, accuracy (%) by the rules and with the judge."""
    from synergy.analysis import by_bench

    rules = by_bench(judged.with_columns(pl.col("correct_rules").alias("correct"))).select(
        "arm", "bench", pl.col("accuracy").alias("accuracy_rules"))
    judge = by_bench(judged).select("arm", "bench", pl.col("accuracy").alias("accuracy_judge"), "questions")
    counts = judged.group_by("arm", "bench", maintain_order=True).agg(
        pl.len().alias("samples"), pl.col("judged").sum().alias("judged"),
        (pl.col("correct") & ~pl.col("correct_rules")).sum().alias("judge_made_correct"),
        (pl.col("judged") & (pl.col("judge_status") != "ok")).sum().alias("judge_not_used"),
        pl.col("judge_flagged").sum().alias("flagged"))
    return counts.join(rules, on=["arm", "bench"]).join(judge, on=["arm", "bench"]).select(
        "arm", "bench", "questions", "samples", "judged", "judge_made_correct", "judge_not_used", "flagged",
        "accuracy_rules", "accuracy_judge")


__all__ = ["JudgeConfig", "JudgeModel", "apply_judge", "judge_effect", "judge_file", "judge_prompt", "to_judge"]
