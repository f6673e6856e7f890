"""Optional LLM judge for answers the rules cannot extract (paper §2.4: rule matching + Qwen2.5-VL-32B).

The paper scores with VLMEvalKit: rule-based matching, and a Qwen2.5-VL-32B judge where the rules
fail. Here the one grader (``synergy.grading``) stays the only arbiter of correctness; the judge
only *extracts* an answer where the grader found none:

1. Judged samples: those whose rule status is in ``statuses`` (default ``no_answer``, ``ambiguous``);
   truncated samples (no end of thinking) only with ``judge_truncated: true``.
2. The judge model reads the question (with its options) and the last ``max_response_chars``
   characters of the response and replies with the final answer only, or ``None``.
3. Its answer is graded by the same grader as ``\\boxed{<answer>}``; ``correct`` becomes that verdict,
   ``correct_rules`` keeps the rules' one. Samples the judge does not see keep the rules' verdict.

Deviations: the judge sees the response text, not the image (as VLMEvalKit's answer extraction);
the prompt is ours (VLMEvalKit's is GPT-specific and not given in the paper); greedy decoding.
Scores are reported with and without the judge (``judge_effect`` table).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from synergy.config import SamplingSettings, _Section
from synergy.grading import Grader, grade_row
from synergy.prompts import Prompt, format_question

log = logging.getLogger("synergy.judge")

JUDGE_INSTRUCTION = (
    "Below are a question and the end of a model's response to it. Extract the model's final answer to the "
    "question. Reply with the final answer only: for a multiple-choice question, the letter of the option the "
    "model chose; otherwise the value or expression exactly as the model states it. If the response gives no "
    "final answer, reply with None."
)


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


def judge_prompt(row: Mapping, response: str, max_chars: int) -> Prompt:
    """A text-only chat prompt asking the judge for the final answer of ``response`` to ``row``."""
    tail = response[-max_chars:] if len(response) > max_chars else response
    text = (f"{JUDGE_INSTRUCTION}\n\nQuestion:\n{format_question(row)}\n\nModel response (end):\n{tail}\n\n"
            f"Final answer:")
    return Prompt([{"role": "user", "content": [{"type": "text", "text": text}]}], [])


_PREFIX_RE = re.compile(r"^(?:final\s+answer|answer|extracted\s+answer)\s*[:：]\s*", re.I)


def parse_judge_answer(text: str | None) -> str | None:
    """The judge's answer: its first non-empty line without an "Answer:" prefix; None for "None" or nothing."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return None
    ans = _PREFIX_RE.sub("", lines[0].strip("`*\"' ")).strip().strip("`*\"'").rstrip(".").strip()
    return None if not ans or ans.lower() in ("none", "null", "n/a") else ans


def to_judge(samples: pl.DataFrame, cfg: JudgeConfig) -> pl.Series:
    """Boolean mask of the samples the judge reads."""
    mask = samples["status"].is_in(list(cfg.statuses))
    if not cfg.judge_truncated:
        mask = mask & ~samples["truncated"]
    return mask


def apply_judge(samples: pl.DataFrame, rows: Mapping[str, Mapping], judge_texts: Sequence[str | None],
                grader: Grader, cfg: JudgeConfig) -> pl.DataFrame:
    """The samples with ``correct_rules``, ``judged``, ``judge_answer``, ``judge_raw`` and the judged ``correct``.

    ``judge_texts`` holds the judge's reply for every sample selected by ``to_judge``, in order.
    """
    mask = to_judge(samples, cfg).to_list()
    if sum(mask) != len(judge_texts):
        raise ValueError(f"{len(judge_texts)} judge replies for {sum(mask)} judged samples")
    replies = iter(judge_texts)
    correct, answers, raws = [], [], []
    for rec, judged in zip(samples.iter_rows(named=True), mask):
        if not judged:
            correct.append(rec["correct"])
            answers.append(None)
            raws.append(None)
            continue
        raw = next(replies)
        ans = parse_judge_answer(raw)
        ok = bool(ans) and grade_row(grader, f"\\boxed{{{ans}}}", rows[rec["id"]]).correct
        correct.append(ok)
        answers.append(ans)
        raws.append(raw)
    return samples.with_columns(
        pl.col("correct").alias("correct_rules"),
        pl.Series("judged", mask, dtype=pl.Boolean),
        pl.Series("judge_answer", answers, dtype=pl.String),
        pl.Series("judge_raw", raws, dtype=pl.String),
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
    prompts = [judge_prompt(rows[r["id"]], r["response"] or "", cfg.max_response_chars)
               for r in picked.iter_rows(named=True)]
    texts: list[str] = []
    if prompts:
        import torch

        from synergy.models import load_model

        model, processor = load_model(model_dir, device="cuda" if torch.cuda.is_available() else "cpu")
        sampling = SamplingConfig(n=1, seed=seed, **cfg.sampling.to_dict())
        texts = [outs[0].text for outs in generate(model, processor, prompts, sampling)]
    with Grader(timeout_s) as grader:
        out = apply_judge(samples, rows, texts, grader, cfg)
    log.info("%s: judged %d of %d samples; accuracy %.3f by the rules, %.3f with the judge", eval_path, len(prompts),
             samples.height, out["correct_rules"].mean(), out["correct"].mean())
    return out


def judge_effect(judged: pl.DataFrame) -> pl.DataFrame:
    """Per (arm, bench): samples, judged, changed to correct, accuracy (%) by the rules and with the judge."""
    from synergy.analysis import by_bench

    rules = by_bench(judged.with_columns(pl.col("correct_rules").alias("correct"))).select(
        "arm", "bench", pl.col("accuracy").alias("accuracy_rules"))
    judge = by_bench(judged).select("arm", "bench", pl.col("accuracy").alias("accuracy_judge"), "questions")
    counts = judged.group_by("arm", "bench", maintain_order=True).agg(
        pl.len().alias("samples"), pl.col("judged").sum().alias("judged"),
        (pl.col("correct") & ~pl.col("correct_rules")).sum().alias("judge_made_correct"))
    return counts.join(rules, on=["arm", "bench"]).join(judge, on=["arm", "bench"]).select(
        "arm", "bench", "questions", "samples", "judged", "judge_made_correct", "accuracy_rules", "accuracy_judge")


__all__ = ["JudgeConfig", "JudgeModel", "apply_judge", "judge_effect", "judge_file", "judge_prompt",
           "parse_judge_answer", "to_judge"]
