"""The paper's five benchmarks (paper §2.4) in the canonical schema, from their published layouts.

| loader     | dataset (split)                    | questions | source columns used (dataset card)                       |
|------------|------------------------------------|-----------|-----------------------------------------------------------|
| mathvision | MathLLMs/MathVision (test)         | 3,040     | id, question, options, image, decoded_image, answer, level, subject |
| mathverse  | AI4Math/MathVerse (testmini)       | 3,940     | sample_index, problem_index, problem_version, question, image, answer, question_type, metadata, query_wo |
| mathvista  | AI4Math/MathVista (testmini)       | 1,000     | pid, question, image, decoded_image, choices, unit, precision, answer, question_type, answer_type, metadata, query |
| mmmu       | MMMU/MMMU, 30 subjects (validation)| 900       | id, question, options (a Python list as a string), image_1..image_7, answer, question_type, subfield, topic_difficulty, img_type |
| mmstar     | Lin-Chen/MMStar (val)              | 1,500     | index, question (options embedded), image, answer, category, l2_category, meta_info |

The paper's difficulty-tagged copies (``JierunChen/<Bench>_with_difficulty_level``) use the same
loaders: they are the same splits in the same layout plus a tag column, read with ``levels: paper``
and ``level_column`` (its name is not published; a wrong name fails with the columns present).

Choices (deviations, each recorded in the row's ``meta``):

1. Options become the canonical ``options`` list and the prompt lists them as ``A. text``. MathVerse
   and MMStar embed them in the question text; they are split off (``split_embedded_options``).
   Where the options exist only in the image (MathVerse "Vision Only", MathVision's ``A..E``
   placeholders) the question is kept as written, ``options`` holds the letters, and
   ``meta.render_options = false`` keeps the prompt from listing them again.
2. MathVista multiple-choice answers are option texts; they become letters. Free-form answers keep
   their ``unit`` and ``precision`` (decimals; the grader rounds both sides).
3. Free-form answers of MathVision / MathVerse / MMMU get an answer type by their form: integer,
   float, text (words) or expression (math-verify).
4. MMMU open questions whose answer is a list of accepted answers are graded against the first;
   all are kept in ``meta.accepted_answers`` and counted in the log.
5. MathVision's own ``level`` (competition difficulty 1-5) is kept as ``meta.competition_level``;
   it is not the paper's pass-rate level (docs/paper.md §1).
6. MathVerse questions with an empty text (Vision Only) use ``query_wo``, the benchmark's own
   instruction to read the question from the image.
7. MathVista questions carry the hint line of the benchmark's own ``query`` ("Hint: Please answer the
   question requiring a floating-point number with two decimal places and provide the final value,
   e.g., 1.23, 1.34, 1.45, at the end."): the unit and decimals a free-form answer needs. VLMEvalKit,
   the paper's evaluation toolkit (paper §2.4), prompts MathVista with that ``query`` text (its
   ``MathVista_MINI`` question column; vlmeval/dataset/image_vqa.py ``MathVista`` builds the default
   prompt from it), so the question becomes ``Hint: ...\nQuestion: <question>`` as in ``query``;
   the options are still listed by our prompt (``A. text``). A row without a hint line keeps its
   question and is counted in the log.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

from synergy.data.loaders.common import (
    Context,
    LoadResult,
    RowProblem,
    infer_answer_type,
    letter_options,
    load_rows,
    meta_json,
    option_letter,
    split_embedded_options,
)
from synergy.data.loaders.registry import LOADERS, file_patterns, split_of
from synergy.data.schema import OPTION_LETTERS, DataError, make_row


def _source(ctx: Context) -> str:
    return f"{ctx.spec.get('source') or ctx.spec.get('local_path')}:{split_of(ctx.spec)}"


def _text(rec: Mapping, key: str) -> str:
    value = rec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowProblem(f"column {key!r} is {type(value).__name__}, expected a string")
    return value


def _answer(rec: Mapping, key: str = "answer") -> str:
    a = rec.get(key)
    if a is None or not str(a).strip():
        raise RowProblem(f"no answer (column {key!r} is empty)")
    return str(a).strip()


def _mc_letter(answer: str, n_options: int) -> str:
    a = answer.strip().strip("()").strip(".").strip()
    if len(a) != 1 or a.upper() not in OPTION_LETTERS[:n_options]:
        raise RowProblem(f"multiple-choice answer {answer!r} is not one of the letters "
                         f"{OPTION_LETTERS[:n_options]}")
    return a.upper()


def _free_form(answer: str) -> dict:
    return {"answer": answer, "answer_type": infer_answer_type(answer)}


# --------------------------------------------------------------------------- MathVision


def mathvision(rec: dict, ctx: Context) -> dict:
    """MathVision: options as a list (empty for free form); answer a letter for multiple choice."""
    options = [str(o) for o in (rec.get("options") or [])]
    answer = _answer(rec)
    image = ctx.images(rec.get("decoded_image")) or ctx.images(rec.get("image"))
    extra = {}
    if options:
        fields = {"answer": _mc_letter(answer, len(options)), "answer_type": "multiple_choice", "options": options}
        if options == list(OPTION_LETTERS[: len(options)]):  # the options are drawn in the image
            extra["render_options"] = False
            ctx.notes["mathvision: options only in the image"] += 1
    else:
        fields = _free_form(answer)
    return make_row(bench=ctx.name, question=_text(rec, "question"), images=[image] if image else [],
                    source=f"{_source(ctx)}:{rec.get('id')}",
                    meta=meta_json(subject=rec.get("subject"), competition_level=rec.get("level"),
                                   image=rec.get("image") if isinstance(rec.get("image"), str) else None, **extra),
                    **fields)


# --------------------------------------------------------------------------- MathVerse


def mathverse(rec: dict, ctx: Context) -> dict:
    """MathVerse: multiple-choice options are embedded in the question ("Choices:"), answers are letters."""
    question = _text(rec, "question")
    extra = {}
    if not question.strip():
        question = _text(rec, "query_wo")
        extra["question_from"] = "query_wo"
        ctx.notes["mathverse: empty question, query_wo used"] += 1
    answer = _answer(rec)
    qtype = str(rec.get("question_type") or "")
    if qtype.replace("_", "-") == "multi-choice":
        letter = _mc_letter(answer, len(OPTION_LETTERS))
        split = split_embedded_options(question)
        if split and OPTION_LETTERS.index(letter) < len(split[1]):
            question, options = split
        else:
            options = letter_options(letter)
            extra["render_options"] = False
            ctx.notes["mathverse: options only in the image"] += 1
        fields = {"answer": letter, "answer_type": "multiple_choice", "options": options}
    elif qtype.replace("_", "-") == "free-form":
        fields = _free_form(answer)
    else:
        raise RowProblem(f"question_type {qtype!r} is neither 'multi-choice' nor 'free-form'")
    image = ctx.images(rec.get("image"))
    meta = dict(rec.get("metadata") or {})
    return make_row(bench=ctx.name, question=question, images=[image] if image else [],
                    source=f"{_source(ctx)}:{rec.get('sample_index')}",
                    meta=meta_json(problem_index=rec.get("problem_index"), problem_version=rec.get("problem_version"),
                                   question_type=qtype, **{k: v for k, v in meta.items() if isinstance(v, str)},
                                   **extra),
                    **fields)


# --------------------------------------------------------------------------- MathVista


_MATHVISTA_TYPES = {"integer": "integer", "float": "float", "text": "text", "list": "expression"}


def mathvista_hint(query) -> str | None:
    """The ``Hint: ...`` line of a MathVista ``query`` (without the "Hint:" head), None if it has none."""
    for line in str(query or "").splitlines():
        if line.strip().lower().startswith("hint:"):
            hint = line.strip()[len("hint:"):].strip()
            return hint or None
    return None


def mathvista(rec: dict, ctx: Context) -> dict:
    """MathVista: choices are option texts (answers too); free-form answers carry unit and precision."""
    answer = _answer(rec)
    qtype = str(rec.get("question_type") or "")
    precision = rec.get("precision")
    if qtype == "multi_choice":
        choices = [str(c) for c in (rec.get("choices") or [])]
        if len(choices) < 2:
            raise RowProblem(f"multi_choice question with {len(choices)} choices")
        fields = {"answer": option_letter(answer, choices), "answer_type": "multiple_choice", "options": choices}
    elif qtype == "free_form":
        atype = str(rec.get("answer_type") or "")
        if atype not in _MATHVISTA_TYPES:
            raise RowProblem(f"answer_type {atype!r} is not one of {sorted(_MATHVISTA_TYPES)}")
        fields = {"answer": answer, "answer_type": _MATHVISTA_TYPES[atype]}
        if atype == "float":
            if precision is None:
                raise RowProblem("float answer without a precision")
            fields["precision"] = int(precision)
    else:
        raise RowProblem(f"question_type {qtype!r} is neither 'multi_choice' nor 'free_form'")
    image = ctx.images(rec.get("decoded_image")) or ctx.images(rec.get("image"))
    meta = dict(rec.get("metadata") or {})
    pid = rec.get("pid") or rec.get("_key")
    question, hint = _text(rec, "question"), mathvista_hint(rec.get("query"))
    if hint:
        question = f"Hint: {hint}\nQuestion: {question}"  # as the benchmark's query (and VLMEvalKit) gives it
    else:
        ctx.notes["mathvista: no hint line in query, question kept as written"] += 1
    return make_row(bench=ctx.name, question=question, images=[image] if image else [],
                    unit=(rec.get("unit") or None), source=f"{_source(ctx)}:{pid}",
                    meta=meta_json(query=rec.get("query"), mathvista_answer_type=rec.get("answer_type"),
                                   **{k: v for k, v in meta.items() if k in ("category", "context", "grade",
                                                                             "language", "skills", "source",
                                                                             "task")}),
                    **fields)


# --------------------------------------------------------------------------- MMMU


def _mmmu_list(value, what: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError) as exc:
        raise RowProblem(f"{what} {value!r} is not a Python list literal") from exc
    if not isinstance(parsed, list):
        raise RowProblem(f"{what} {value!r} is not a list")
    return [str(v) for v in parsed]


def mmmu(rec: dict, ctx: Context) -> dict:
    """MMMU: options are a Python list written as a string; up to seven images image_1..image_7."""
    options = _mmmu_list(rec.get("options") if rec.get("options") is not None else "[]", "options")
    answer = _answer(rec)
    qtype = str(rec.get("question_type") or "")
    extra = {}
    if qtype == "multiple-choice":
        if len(options) < 2:
            raise RowProblem(f"multiple-choice question with {len(options)} options")
        fields = {"answer": _mc_letter(answer, len(options)), "answer_type": "multiple_choice", "options": options}
    elif qtype == "open":
        accepted = _mmmu_list(answer, "answer") if answer.startswith("[") else [answer]
        if not accepted or not accepted[0].strip():
            raise RowProblem(f"open answer {answer!r} has no value")
        if len(accepted) > 1:
            extra["accepted_answers"] = accepted
            ctx.notes["mmmu: open answers with several accepted values (graded against the first)"] += 1
        fields = _free_form(accepted[0].strip())
    else:
        raise RowProblem(f"question_type {qtype!r} is neither 'multiple-choice' nor 'open'")
    images = [b for b in (ctx.images(rec.get(f"image_{k}")) for k in range(1, 8)) if b]
    if not images:
        raise RowProblem("no image in image_1..image_7")
    parts = ctx.path.relative_to(ctx.images.root).parts
    subject = parts[0] if len(parts) > 1 else None  # MMMU's layout: <Subject>/validation-*.parquet
    return make_row(bench=ctx.name, question=_text(rec, "question"), images=images,
                    source=f"{_source(ctx)}:{rec.get('id')}",
                    meta=meta_json(subject=subject, subfield=rec.get("subfield"),
                                   topic_difficulty=rec.get("topic_difficulty"), img_type=rec.get("img_type"),
                                   **extra),
                    **fields)


# --------------------------------------------------------------------------- MMStar


def mmstar(rec: dict, ctx: Context) -> dict:
    """MMStar: four options embedded in the question ("Options: A: ..., B: ..."), answer a letter."""
    question = _text(rec, "question")
    letter = _mc_letter(_answer(rec), len(OPTION_LETTERS))
    split = split_embedded_options(question)
    extra = {}
    if split and OPTION_LETTERS.index(letter) < len(split[1]):
        question, options = split
    else:
        options = letter_options(letter)
        extra["render_options"] = False
        ctx.notes["mmstar: options not parsed, question kept as written"] += 1
    image = ctx.images(rec.get("image"))
    if not image:
        raise RowProblem("no image")
    info = dict(rec.get("meta_info") or {})
    return make_row(bench=ctx.name, question=question, options=options, answer=letter,
                    answer_type="multiple_choice", images=[image], source=f"{_source(ctx)}:{rec.get('index')}",
                    meta=meta_json(category=rec.get("category"), l2_category=rec.get("l2_category"),
                                   origin=info.get("source"), **extra))


# --------------------------------------------------------------------------- registry

CONVERTERS = {"mathvision": mathvision, "mathverse": mathverse, "mathvista": mathvista, "mmmu": mmmu, "mmstar": mmstar}
NEEDED = {
    "mathvision": ("id", "question", "options", "answer"),
    "mathverse": ("sample_index", "question", "image", "answer", "question_type"),
    "mathvista": ("question", "choices", "answer", "question_type", "answer_type", "precision"),
    "mmmu": ("id", "question", "options", "answer", "question_type", "image_1"),
    "mmstar": ("index", "question", "image", "answer"),
}
RAW_IDS = {
    "mathvision": "id", "mathverse": "sample_index", "mathvista": "pid", "mmmu": "id", "mmstar": "index",
}


def load_benchmark(spec: Mapping, root: str | Path, seed: int = 0) -> LoadResult:
    """Canonical rows of one benchmark from its dataset directory (``spec``: the config entry as a mapping)."""
    loader = spec["loader"]
    if LOADERS.get(loader) is None or LOADERS[loader].kind != "benchmark":
        raise ValueError(f"{loader!r} is not a benchmark loader (have {sorted(CONVERTERS)})")
    key = RAW_IDS[loader]

    def raw_id(rec: dict, i: int, path: Path) -> str:
        value = rec.get(key, rec.get("_key"))
        if value is None or str(value).strip() == "":
            raise DataError(f"record {i} in {path}: no {key!r} (the question id)")
        return str(value)

    return load_rows(root, spec, file_patterns(spec), loader=loader, needed=NEEDED[loader],
                     convert=CONVERTERS[loader], raw_id=raw_id, seed=seed)

