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


def reflective_trace(q: Question, text_only: bool, rng: random.Random, checks: int = 2) -> str:
    """Step-by-step reasoning followed by ``checks`` rounds of verification (s1.1-R1 / Eureka style)."""
    lines = [rng.choice(("Let me read the question carefully.", "Let me work through this step by step."))]
    lines.append(("The description says: " if text_only else "Looking at the image: ") + q.scene.describe())
    lines.append(q.goal)
    lines.extend(q.steps)
    for _ in range(checks):
        lines.append(rng.choice(_CHECKS))
        lines.extend(q.steps[-2:] if len(q.steps) > 1 else q.steps)
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


def verbose_trace(q: Question, text_only: bool, rng: random.Random, error_rate: float = 0.2) -> str:
    """Long, repetitive reasoning without verification; wrong with probability ``error_rate`` (s1-Gemini style)."""
    scene = q.scene.describe()
    lines = [f'Okay, so the question is asking: "{q.text}"', rng.choice(_FILLER), rng.choice(_FILLER)]
    lines.append(f"Let me restate the problem in my own words. {scene}")
    lines.append(f"And the question is: {q.text} {rng.choice(_FILLER)}")
    for step in q.steps:
        lines += [rng.choice(_FILLER), step, f"In other words, {step[0].lower()}{step[1:]}"]
    answer = _slip(q, rng) if rng.random() < error_rate else answer_text(q)
    lines.append("So, to summarize everything I have considered so far:")
    lines.extend(q.steps)
    lines.append(f"{rng.choice(_FILLER)} Therefore the final answer should be {answer}.")
    return _wrap("\n".join(lines), answer)


def make_response(q: Question, style: str, text_only: bool, rng: random.Random, *, reasoning: bool = True,
                  error_rate: float = 0.2) -> str:
    """Dispatch on ``style`` (one of STYLES)."""
    if style == "short":
        return short_response(q, reasoning)
    if style == "verbose":
        return verbose_trace(q, text_only, rng, error_rate)
    if style == "reflective":
        return reflective_trace(q, text_only, rng, checks=2)
    if style == "reflective_short":
        return reflective_trace(q, text_only, rng, checks=1)
    raise ValueError(f"unknown trace style {style!r}; expected one of {STYLES}")
