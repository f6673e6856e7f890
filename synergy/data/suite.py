"""Build the embedded synthetic suite: five benchmarks and the training sets, in the canonical schema.

Stands in for the paper's benchmarks (MathVision, MathVerse, MathVista, MMMU, MMStar; paper §2.1)
and training data (s1-Gemini2, s1.1-R1, Eureka-Distill SFT traces and Eureka's RL queries; paper
§2.1–2.2, Table 1). Everything is deterministic from ``synthetic.seed``.

Disjointness: every benchmark question is drawn first; a training question whose content key
(template, question text, options and scene) equals any benchmark question's is redrawn, so no
evaluation question is ever trained on (``tests/test_suite.py`` proves it on the built files).
Text-only sets describe the scene in words instead of showing it (the paper's s1 sets are text).
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections.abc import Mapping

from synergy.data.schema import make_row, validate_rows
from synergy.data.synthetic import TEMPLATES, Question, draw_scene, encode_png, make_question
from synergy.data.traces import make_response

log = logging.getLogger("synergy.data")


def _rng(seed: int, name: str) -> random.Random:
    """One independent random stream per (seed, set name), stable across Python versions."""
    return random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))


def _pick_templates(templates: Mapping[str, float], rng: random.Random, n: int) -> list[str]:
    names = sorted(templates)
    unknown = [t for t in names if t not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown question templates {unknown}; known: {sorted(TEMPLATES)}")
    return rng.choices(names, weights=[templates[t] for t in names], k=n)


def _question_row(q: Question, set_name: str, idx: int, *, image_size: int, text_only: bool, rng: random.Random,
                  response: str | None, reasoning: bool | None) -> dict:
    meta = {"template": q.template, "tier": q.tier, "scene": q.scene.key(), "key": q.key()}
    if reasoning is not None:
        meta["reasoning"] = reasoning
    question = f"{q.scene.describe()} {q.text}" if text_only else q.text
    images = [] if text_only else [encode_png(draw_scene(q.scene, image_size, rng))]
    return make_row(id=f"{set_name}/{idx:05d}", bench=set_name, question=question, options=list(q.options),
                    answer=q.answer, answer_type=q.answer_type, images=images, response=response,
                    source=f"synergy.synthetic:{q.template}", meta=meta)


def build_benchmark(name: str, num_questions: int, templates: Mapping[str, float], *, seed: int, image_size: int,
                    max_objects: int, exclude: set[str] | None = None) -> list[dict]:
    """One benchmark: ``num_questions`` distinct image questions drawn from the weighted templates."""
    rng = _rng(seed, name)
    seen = set(exclude or ())
    rows = []
    for tpl in _pick_templates(templates, rng, num_questions):
        q = _draw_new(tpl, rng, max_objects, seen)
        rows.append(_question_row(q, name, len(rows), image_size=image_size, text_only=False, rng=rng,
                                  response=None, reasoning=None))
    validate_rows(rows, name, require_images=True)
    return rows


def _draw_new(tpl: str, rng: random.Random, max_objects: int, seen: set[str]) -> Question:
    for _ in range(10_000):
        q = make_question(tpl, rng, max_objects)
        if q.key() not in seen:
            seen.add(q.key())
            return q
    raise RuntimeError(f"template {tpl!r}: no new question in 10000 draws (the question space is exhausted)")


def build_train_set(name: str, num_questions: int, templates: Mapping[str, float], *, style: str, modality: str,
                    seed: int, image_size: int, max_objects: int, exclude: set[str], error_rate: float = 0.2,
                    reasoning_share: float = 1.0, text_share: float = 0.0, scene_view: str = "objects",
                    survey_share: float = 0.0) -> list[dict]:
    """A training set disjoint from ``exclude`` (benchmark keys). ``style='none'`` gives RL queries.

    ``text_share`` (modality image only): that share of rows describes the scene in words instead of showing
    it, so that a model pretrained on the set has seen both forms of a question (docs/embedded-study.md §3).
    ``survey_share`` (modality image, style short only): that share of the picture rows asks instead for the
    picture's group counts (or bar heights) and answers with them (``Scene.survey``): the perception step
    that every counts-view trace starts with, taught as a skill of its own (docs/embedded-study.md §6).
    """
    if not 0.0 <= survey_share <= 1.0 or (survey_share and (modality != "image" or style != "short")):
        raise ValueError(f"train set {name}: survey_share must be in [0, 1] and needs modality 'image' and style "
                         f"'short', got {survey_share} with modality {modality!r}, style {style!r}")
    if not 0.0 <= text_share <= 1.0 or (text_share and modality != "image"):
        raise ValueError(f"train set {name}: text_share must be in [0, 1] and needs modality 'image', got "
                         f"{text_share} with modality {modality!r}")
    if modality not in ("image", "text"):
        raise ValueError(f"train set {name}: modality must be 'image' or 'text', got {modality!r}")
    rng = _rng(seed, name)
    seen = set(exclude)
    rows = []
    for tpl in _pick_templates(templates, rng, num_questions):
        q = _draw_new(tpl, rng, max_objects, seen)
        text_only = modality == "text" or (text_share > 0 and rng.random() < text_share)
        if survey_share > 0 and not text_only and rng.random() < survey_share:
            rows.append(_survey_row(q, name, len(rows), image_size=image_size, rng=rng))
            continue
        reasoning = None if style == "none" else rng.random() < reasoning_share
        response = None if style == "none" else make_response(q, style, text_only, rng, reasoning=bool(reasoning),
                                                               error_rate=error_rate, scene_view=scene_view)
        rows.append(_question_row(q, name, len(rows), image_size=image_size, text_only=text_only, rng=rng,
                                  response=response, reasoning=reasoning))
    validate_rows(rows, name, require_images=modality == "image" and not text_share)
    return rows


SURVEY_QUESTIONS = {"shapes": "How many shapes of each colour and of each kind are in the picture?",
                    "bars": "Read the bar chart: the colour and height of every bar, from left to right."}


def _survey_row(q: Question, set_name: str, idx: int, *, image_size: int, rng: random.Random) -> dict:
    """A perception row: the picture of ``q`` with a request for its group counts; the answer is ``Scene.survey``.

    Its ``answer`` (the number of shapes, or the bars' total height) is never graded: survey rows are training
    text only (the pretraining set), and the template name ``survey`` is no benchmark template."""
    scene = q.scene
    total = sum(h for _, h in scene.bars) if scene.kind == "bars" else len(scene.objects)
    meta = {"template": "survey", "tier": "perception", "scene": scene.key(), "key": f"survey:{q.key()}",
            "reasoning": False}
    return make_row(id=f"{set_name}/{idx:05d}", bench=set_name, question=SURVEY_QUESTIONS[scene.kind], options=[],
                    answer=str(total), answer_type="integer", images=[encode_png(draw_scene(scene, image_size, rng))],
                    response=scene.survey(), source="synergy.synthetic:survey", meta=meta)


def question_keys(rows: list[dict]) -> set[str]:
    return {json.loads(r["meta"])["key"] for r in rows}


def summarize(rows: list[dict]) -> str:
    """One line per template: how many rows, and the answer types (for the rule logs)."""
    from collections import Counter

    c = Counter((json.loads(r["meta"])["template"], r["answer_type"]) for r in rows)
    return "; ".join(f"{t} ({a}): {n}" for (t, a), n in sorted(c.items()))
