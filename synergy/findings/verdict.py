"""The verdict rule of the findings page (docs/findings.md §1), stated once and applied to every claim.

- A **directional** claim (the statistic is above, or below, a threshold: 0 for a difference, the
  claimed factor for a ratio) *holds* when the 95 % interval lies entirely on the claimed side,
  is *opposite* when it lies entirely on the other side, and is *not shown* otherwise.
- An **about equal** claim *holds* when the interval lies inside [-tolerance, +tolerance], is
  *opposite* when it lies entirely outside it on one side, else *not shown*.
- An **at most** claim (no more than a tolerance, e.g. "no combination beats its better parent")
  *holds* when the interval's upper end is at most the tolerance, is *opposite* when its lower end
  is above it, else *not shown*.
- A claim of several parts *holds* when every part holds, is *opposite* when any part is opposite,
  is *not measurable* when any part is, else *not shown*.
- A claim whose arm (or training log) the study lacks is *not measurable*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

HOLDS, OPPOSITE, NOT_SHOWN, NOT_MEASURABLE = "holds", "opposite", "not shown", "not measurable"
VERDICTS = (HOLDS, OPPOSITE, NOT_SHOWN, NOT_MEASURABLE)

RULE_TEXT = (
    "Verdict rule: each statistic has a 95 % paired bootstrap interval (questions resampled within their "
    "difficulty level, the same questions for every arm). A directional claim holds when the interval lies "
    "entirely on the claimed side of its threshold (0 for a difference, the claimed factor for a ratio), is "
    "opposite when it lies entirely on the other side, else not shown. An 'about equal' claim holds when the "
    "interval lies inside the stated tolerance, an 'at most' claim when its upper end is at most the "
    "tolerance. A claim of several parts holds when every part holds and is opposite when any part is. "
    "An arm the study lacks makes its claims not measurable."
)


def _bad(*xs: float) -> bool:
    return any(x is None or math.isnan(x) for x in xs)


def directional(low: float, high: float, sign: int, threshold: float = 0.0) -> str:
    """``sign`` +1: the claim is statistic > threshold; -1: statistic < threshold."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign}")
    if _bad(low, high):
        return NOT_MEASURABLE
    if low > threshold:
        return HOLDS if sign > 0 else OPPOSITE
    if high < threshold:
        return HOLDS if sign < 0 else OPPOSITE
    return NOT_SHOWN


def about_equal(low: float, high: float, tolerance: float) -> str:
    if _bad(low, high):
        return NOT_MEASURABLE
    if -tolerance <= low and high <= tolerance:
        return HOLDS
    if low > tolerance or high < -tolerance:
        return OPPOSITE
    return NOT_SHOWN


def at_most(low: float, high: float, tolerance: float) -> str:
    if _bad(low, high):
        return NOT_MEASURABLE
    if high <= tolerance:
        return HOLDS
    if low > tolerance:
        return OPPOSITE
    return NOT_SHOWN


def combine(parts: Sequence[str]) -> str:
    """The verdict of a claim of several parts."""
    if not parts:
        return NOT_MEASURABLE
    if any(p == OPPOSITE for p in parts):
        return OPPOSITE
    if any(p == NOT_MEASURABLE for p in parts):
        return NOT_MEASURABLE
    if all(p == HOLDS for p in parts):
        return HOLDS
    return NOT_SHOWN
