"""The paper's training data (paper §2.1-2.2, Table 1) in the canonical schema.

| loader         | dataset                      | rows  | what becomes a row                                         |
|----------------|------------------------------|-------|------------------------------------------------------------|
| s1k            | simplescaling/s1K            | 1,000 | text question + Gemini 2.0 Flash Thinking trace (s1-Gemini2) |
| s1k            | simplescaling/s1K-1.1        | 1,000 | text question + DeepSeek-R1 trace (s1.1-R1), `trace: deepseek` |
| eureka_distill | JierunChen/Eureka-Distill    | 34k   | MM-Eureka query + image(s) + distilled trace (SFT), or the query alone (RL, `style: none`) |

Every trace is written in the paper's format (paper §2.1): ``<think>\\n{thinking}\\n</think>\\n\\n{answer}``,
where the answer part is the dataset's own final answer text (s1K: the ``attempt``), which normally
ends in ``\\boxed{...}``. The reasoning instruction is NOT stored in the question: the training rules
append it (``reasoning_instruction: true``), so it appears exactly once.

Columns: s1K has ``question, solution, cot_type, source_type, metadata, thinking_trajectories
(list), attempt``; s1K-1.1 has ``gemini_thinking_trajectory, gemini_attempt,
deepseek_thinking_trajectory, deepseek_attempt`` instead. Eureka-Distill's layout is not published
(docs/paper.md §1): the loader recognises the common ones (plain ``question/answer/response/
images`` columns, LLaMA-Factory's ShareGPT ``messages``/``conversations`` + ``images``, verl's
``prompt`` + ``reward_model.ground_truth`` + ``images``) and takes ``columns: {question, answer,
response, thinking, images, id}`` to name others; a set it cannot read fails with the columns present.

Choices: the gold answer of an s1K row is the last ``\\boxed{}`` of its attempt, else the reference
``solution`` (only RL and grading use it; SFT does not). Attempts without ``\\boxed{}`` are kept (the
paper trained on all 1k) and counted. Eureka questions with a one-letter answer and option lines
become multiple choice; ``<image>`` placeholders and an embedded reasoning instruction are removed
from question texts and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synergy.data.loaders.common import (
    Context,
    LoadResult,
    RowProblem,
    infer_answer_type,
    last_boxed,
    letter_options,
    load_rows,
    meta_json,
    split_embedded_options,
)
from synergy.data.loaders.registry import LOADERS, file_patterns, split_of
from synergy.data.schema import OPTION_LETTERS, make_row
from synergy.prompts import REASONING_INSTRUCTION

_THINK_TAG_RE = re.compile(r"</?think>")


def think_trace(thinking: str, answer_text: str) -> str:
    """The paper's trace format: ``<think>\\n...\\n</think>\\n\\n<answer text>``."""
    thinking = _THINK_TAG_RE.sub("", thinking).strip()
    return f"<think>\n{thinking}\n</think>\n\n{answer_text.strip()}"


def _style(ctx: Context) -> str:
    return ctx.spec.get("style") or "none"


# --------------------------------------------------------------------------- s1K / s1K-1.1


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value if v is not None)
    return "" if value is None else str(value)


def s1k(rec: dict, ctx: Context) -> dict:
    """One s1K / s1K-1.1 question with the Gemini or DeepSeek trace (``trace:``)."""
    question = str(rec.get("question") or "").strip()
    if not question:
        raise RowProblem("empty question")
    trace = ctx.spec.get("trace") or "gemini"
    cols = ((f"{trace}_thinking_trajectory", f"{trace}_attempt") if f"{trace}_thinking_trajectory" in rec
            else ("thinking_trajectories", "attempt") if trace == "gemini" and "thinking_trajectories" in rec
            else None)
    response = None
    attempt = ""
    if cols is None:
        if _style(ctx) != "none":
            raise RowProblem(f"no {trace} trace: neither '{trace}_thinking_trajectory' nor (for gemini) "
                             f"'thinking_trajectories' is a column; columns present: {sorted(rec)}")
    else:
        thinking, attempt = _joined(rec.get(cols[0])).strip(), _joined(rec.get(cols[1])).strip()
        if _style(ctx) != "none":
            if not thinking or not attempt:
                raise RowProblem(f"empty {trace} trace ({cols[0]!r} or {cols[1]!r} is empty)")
            response = think_trace(thinking, attempt)
    answer = last_boxed(attempt)
    if answer is None:
        ctx.notes[f"s1k: {trace} attempt without \\boxed{{}} (gold = solution)"] += 1
        answer = str(rec.get("solution") or "").strip()
    if not answer:
        raise RowProblem("no answer: no \\boxed{} in the attempt and an empty solution")
    return make_row(bench=ctx.name, question=question, answer=answer, answer_type=infer_answer_type(answer),
                    response=response, source=f"{ctx.spec.get('source') or ctx.spec.get('local_path')}:{trace}",
                    meta=meta_json(cot_type=rec.get("cot_type"), source_type=rec.get("source_type"), trace=trace))


# --------------------------------------------------------------------------- Eureka-Distill

_CANDIDATES = {
    "id": ("id", "idx", "index", "uid", "pid", "sample_id", "question_id"),
    "messages": ("messages", "conversations", "conversation", "prompt"),
    "question": ("question", "problem", "query", "prompt", "instruction"),
    "answer": ("answer", "ground_truth", "gt_answer", "gt", "final_answer", "reward_model", "solution"),
    "response": ("response", "output", "completion", "trace", "distill_response", "chosen"),
    "thinking": (),
    "images": ("images", "image", "decoded_image", "image_path", "image_paths", "image_urls"),
}
_IMAGE_TOKEN_RE = re.compile(r"<image>|<\|vision_start\|>(?:<\|image_pad\|>)*<\|vision_end\|>|<image\s*\d+>")
_OPTION_LINE_RE = re.compile(r"(?m)^\s*\(?[A-H]\s*[.:：)]\s*\S")


def eureka_columns(rec: Mapping, overrides: Mapping[str, str] | None) -> dict[str, str | None]:
    """role -> column for one record: the configured ``columns`` first, else the first known name present."""
    out: dict[str, str | None] = {}
    for role, names in _CANDIDATES.items():
        if overrides and role in overrides:
            if overrides[role] not in rec:
                raise RowProblem(f"configured column {role}: {overrides[role]!r} is not in the record; "
                                 f"columns present: {sorted(rec)}")
            out[role] = overrides[role]
        else:
            out[role] = next((c for c in names if c in rec), None)
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image", ...}]
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return ""


def _turns(messages: Any) -> list[tuple[str, str]]:
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError as exc:
            raise RowProblem("messages column holds a string that is not JSON") from exc
    if not isinstance(messages, list):
        raise RowProblem(f"messages column is {type(messages).__name__}, expected a list of turns")
    turns = []
    for m in messages:
        if not isinstance(m, Mapping):
            raise RowProblem("a message turn is not a mapping")
        role = str(m.get("role") or m.get("from") or "").lower()
        role = {"human": "user", "gpt": "assistant"}.get(role, role)
        turns.append((role, _content_text(m.get("content", m.get("value")))))
    return turns


def _clean_question(text: str, ctx: Context) -> str:
    cleaned = _IMAGE_TOKEN_RE.sub("", text)
    if cleaned != text:
        ctx.notes["eureka: image placeholders removed from the question"] += 1
    if REASONING_INSTRUCTION in cleaned:
        cleaned = cleaned.replace(REASONING_INSTRUCTION, "")
        ctx.notes["eureka: reasoning instruction removed from the question (the rules append it)"] += 1
    return cleaned.strip()


def _clean_answer(value: Any) -> str:
    if isinstance(value, Mapping):  # verl: reward_model = {"ground_truth": ..., "style": "rule"}
        value = value.get("ground_truth")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    text = "" if value is None else str(value).strip()
    boxed = last_boxed(text)
    if boxed is not None and text.startswith("\\boxed"):
        text = boxed
    if len(text) > 1 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def eureka_distill(rec: dict, ctx: Context) -> dict:
    """One Eureka-Distill row: the multimodal query, its gold answer and (SFT) the distilled trace."""
    cols = eureka_columns(rec, ctx.spec.get("columns"))
    question = response = None
    mval = rec.get(cols["messages"]) if cols["messages"] else None
    if isinstance(mval, list) or (isinstance(mval, str) and mval.lstrip().startswith("[")):
        turns = _turns(mval)
        users = [t for r, t in turns if r == "user"]
        answers = [t for r, t in turns if r == "assistant"]
        question = users[0] if users else None
        response = answers[-1] if answers else None
    if question is None and cols["question"]:
        value = rec.get(cols["question"])
        question = _turns(value)[-1][1] if isinstance(value, list) else (None if value is None else str(value))
    if question is None:
        raise RowProblem(f"no question: no messages/question column recognised; columns present: {sorted(rec)} "
                         f"(name it with `columns: {{question: ...}}`)")
    if cols["response"]:
        response = rec.get(cols["response"]) if rec.get(cols["response"]) is not None else response
    question = _clean_question(question, ctx)
    if not question:
        raise RowProblem("empty question")
    if not cols["answer"]:
        raise RowProblem(f"no answer column recognised; columns present: {sorted(rec)} "
                         f"(name it with `columns: {{answer: ...}}`)")
    answer = _clean_answer(rec.get(cols["answer"]))
    if not answer:
        raise RowProblem(f"empty answer (column {cols['answer']!r})")
    trace = None
    if _style(ctx) != "none":
        response = "" if response is None else str(response)
        if cols["thinking"]:
            response = think_trace(str(rec.get(cols["thinking"]) or ""), response)
        if not response.strip():
            raise RowProblem(f"no response (trace) for an SFT set; columns present: {sorted(rec)} "
                             f"(name it with `columns: {{response: ...}}`)")
        if "</think>" not in response:
            ctx.notes["eureka: trace without </think>"] += 1
        if last_boxed(response.split("</think>")[-1]) is None:
            ctx.notes["eureka: trace without a final \\boxed{}"] += 1
        trace = response.strip()
    raw_images = rec.get(cols["images"]) if cols["images"] else None
    raw_images = raw_images if isinstance(raw_images, list) else [raw_images] if raw_images is not None else []
    images = [b for b in (ctx.images(v) for v in raw_images) if b]
    if not images and ctx.spec.get("modality", "image") == "image":
        ctx.notes["eureka: question without an image"] += 1
    fields: dict[str, Any] = {"answer": answer, "answer_type": infer_answer_type(answer)}
    extra = {}
    if len(answer) == 1 and answer.upper() in OPTION_LETTERS and len(_OPTION_LINE_RE.findall(question)) >= 2:
        split = split_embedded_options(question)
        if split and OPTION_LETTERS.index(answer.upper()) < len(split[1]):
            fields = {"answer": answer.upper(), "answer_type": "multiple_choice", "options": split[1]}
            question = split[0]
        else:
            fields = {"answer": answer.upper(), "answer_type": "multiple_choice",
                      "options": letter_options(answer.upper())}
            extra["render_options"] = False
    return make_row(bench=ctx.name, question=question, images=images, response=trace,
                    source=f"{ctx.spec.get('source') or ctx.spec.get('local_path')}:{split_of(ctx.spec)}",
                    meta=meta_json(**extra), **fields)


# --------------------------------------------------------------------------- registry

CONVERTERS = {"s1k": s1k, "eureka_distill": eureka_distill}
NEEDED = {"s1k": ("question",), "eureka_distill": ()}


def load_train_set(spec: Mapping, root: str | Path, seed: int = 0) -> LoadResult:
    """Canonical rows of one training set from its dataset directory."""
    loader = spec["loader"]
    if LOADERS.get(loader) is None or LOADERS[loader].kind != "train":
        raise ValueError(f"{loader!r} is not a train-set loader (have {sorted(CONVERTERS)})")
    overrides = spec.get("columns") or {}

    def raw_id(rec: dict, i: int, path: Path) -> str:
        key = overrides.get("id") or next((c for c in _CANDIDATES["id"] if c in rec), None)
        if loader == "eureka_distill" and key and rec.get(key) not in (None, ""):
            return str(rec[key])
        return f"{path.stem}:{i:05d}"

    return load_rows(root, spec, file_patterns(spec), loader=loader, needed=NEEDED[loader],
                     convert=CONVERTERS[loader], raw_id=raw_id, seed=seed)
