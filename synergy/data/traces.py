"""Response styles of the embedded suite: the base model's short answers and three long-CoT styles.

The three SFT sets mirror the paper's Table 1 (docs/paper.md §2, §8):

1. ``verbose``: s1-Gemini2's role. Text-only, long and meandering: the problem is restated several
   times, filler sentences pad every step, nothing is verified, and a share of traces
   (``error_rate``) slips in the arithmetic and ends on a wrong answer. Lower quality, longer.
2. ``reflective``: s1.1-R1's role. Text-only, every step shown, then "Wait, let me check" style
   verification that recounts before answering. High quality, always correct.
3. ``reflective_short``: Eureka-Distill's role. Multimodal: reasons over the picture, with one
   short check. Eureka-Distill kept the shortest correct of 8 samples of an s1.1-R1-tuned model;
   here traces are written from the solved scene, so they are correct by construction (deviation).

Every trace has the paper's format: ``<think> ... </think>`` then ``\\boxed{answer}``.
The ``short`` style is what the tiny base model is pretrained on: a one-sentence ``<think>`` and a
boxed answer when the prompt carries the reasoning instruction, else ``The answer is X.``, like an
instruct model that follows the instruction.
"""

from __future__ import annotations

import random
import re

from synergy.data.synthetic import Question

STYLES = ("short", "verbose", "reflective", "reflective_short")

_FILLER = (
    "Okay, let me think about this.",
    "Hmm, so what does that mean here?",
    "Let me make sure I understand what is being asked.",
    "This seems simple but I should be careful.",
    "Alright, moving on to the next part.",
    "I think this is the right way to look at it.",
    "Let me go through it slowly, one piece at a time.",
    "So far so good, I believe.",
    "Now, let me continue with the reasoning.",
    "That is an important detail to keep in mind.",
)
_CHECKS = (
    "Wait, let me check that again.",
    "Wait, let me double-check.",
    "Hmm, let me verify this before answering.",
    "Let me check for a mistake.",
)


def answer_text(q: Question) -> str:
    """How the final answer is written: the option letter for multiple choice, else the value."""
    return q.answer


def _option_clause(q: Question) -> str:
    if q.answer_type != "multiple_choice":
        return ""
    idx = "ABCDEFGH".index(q.answer)
    return f" That is option {q.answer}, {q.options[idx]}."


def _wrap(think: str, answer: str) -> str:
    return f"<think>\n{think.strip()}\n</think>\n\\boxed{{{answer}}}"


def short_response(q: Question, reasoning: bool) -> str:
    """The base model's answer: brief thinking + boxed answer with the instruction, else one sentence."""
    if reasoning:
        return _wrap(q.goal, answer_text(q))
    return f"The answer is {answer_text(q)}."


SCENE_VIEWS = ("objects", "counts")
_LISTING = re.compile(r"^The (.+?) are: .*\.$")
_COUNTED = re.compile(r"^Counting them gives (\d+)\.$")


def _view(q: Question, scene_view: str) -> tuple[str, tuple[str, ...]]:
    """The trace's picture description and steps: every object with its cell (``objects``), or group counts
    (``counts``: the listing steps dropped, "Counting them gives N." said as "There are N <group>.")."""
    if scene_view == "objects":
        return q.scene.describe(), q.steps
    if scene_view != "counts":
        raise ValueError(f"unknown scene_view {scene_view!r}; expected one of {SCENE_VIEWS}")
    steps, what = [], ""
    for step in q.steps:
        listing = _LISTING.match(step)
        if listing:
            what = listing.group(1)
            continue
        counted = _COUNTED.match(step)
        steps.append(f"There are {counted.group(1)} {what}." if counted and what else step)
    return q.scene.survey(), tuple(steps)


def reflective_trace(q: Question, text_only: bool, rng: random.Random, checks: int = 2,
                     scene_view: str = "objects") -> str:
    """Step-by-step reasoning followed by ``checks`` rounds of verification (s1.1-R1 / Eureka style)."""
    scene, steps = _view(q, scene_view)
    lines = [rng.choice(("Let me read the question carefully.", "Let me work through this step by step."))]
    lines.append(("The description says: " if text_only else "Looking at the image: ") + scene)
    lines.append(q.goal)
    lines.extend(steps)
    for _ in range(checks):
        lines.append(rng.choice(_CHECKS))
        lines.extend(steps[-2:] if len(steps) > 1 else steps)
        lines.append("Yes, that is consistent.")
    lines.append(f"So the answer is {answer_text(q)}.{_option_clause(q)}")
    return _wrap("\n".join(lines), answer_text(q))


def _slip(q: Question, rng: random.Random) -> str:
    """A wrong final answer of the same kind as the gold one (the verbose style's mistakes)."""
    if q.answer_type == "multiple_choice":
        letters = [c for c in "ABCDEFGH"[: len(q.options)] if c != q.answer]
        return rng.choice(letters)
    value = int(q.answer)
    return str(max(0, value + rng.choice((-2, -1, 1, 2))) if value > 0 else value + rng.choice((1, 2)))


def verbose_trace(q: Question, text_only: bool, rng: random.Random, error_rate: float = 0.2,
                  scene_view: str = "objects") -> str:
    """Long, repetitive reasoning without verification; wrong with probability ``error_rate`` (s1-Gemini style)."""
    scene, steps = _view(q, scene_view)
    lines = [f'Okay, so the question is asking: "{q.text}"', rng.choice(_FILLER), rng.choice(_FILLER)]
    lines.append(f"Let me restate the problem in my own words. {scene}")
    lines.append(f"And the question is: {q.text} {rng.choice(_FILLER)}")
    for step in steps:
        lines += [rng.choice(_FILLER), step, f"In other words, {step[0].lower()}{step[1:]}"]
    answer = _slip(q, rng) if rng.random() < error_rate else answer_text(q)
    lines.append("So, to summarize everything I have considered so far:")
    lines.extend(steps)
    lines.append(f"{rng.choice(_FILLER)} Therefore the final answer should be {answer}.")
    return _wrap("\n".join(lines), answer)


def make_response(q: Question, style: str, text_only: bool, rng: random.Random, *, reasoning: bool = True,
                  error_rate: float = 0.2, scene_view: str = "objects") -> str:
    """Dispatch on ``style`` (one of STYLES); ``scene_view`` (one of SCENE_VIEWS) for the long styles."""
    if style == "short":
        return short_response(q, reasoning)
    if style == "verbose":
        return verbose_trace(q, text_only, rng, error_rate, scene_view)
    if style == "reflective":
        return reflective_trace(q, text_only, rng, checks=2, scene_view=scene_view)
    if style == "reflective_short":
        return reflective_trace(q, text_only, rng, checks=1, scene_view=scene_view)
    raise ValueError(f"unknown trace style {style!r}; expected one of {STYLES}")
