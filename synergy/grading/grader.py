"""The ``Grader`` facade: one grader for difficulty sampling, the RL reward and evaluation (paper §2.2, §2.4).

``Grader.grade`` extracts the final answer (``extraction``), checks it by answer type (``matching``
for numbers and multiple choice, the math-verify child of ``verifier`` for expressions and every
fallback) and never raises for any response string: an exception gives status ``"error"``
(wrong), a deadline ``"timeout"`` (wrong); ``stats`` counts them.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from synergy.grading.extraction import _extract, check_format
from synergy.grading.matching import (
    _clean_numeric,
    _clean_precision,
    _gold_letter,
    _mc_letter,
    _numbers_match,
    _parse_number,
    _plain_number,
    _safe_fraction,
    _slash,
)
from synergy.grading.text import _as_list, _compact, _norm
from synergy.grading.verifier import VerifierProcess, _Timeout
from synergy.rows import ANSWER_TYPES, OPTION_LETTERS

log = logging.getLogger("synergy.grading")

STATUSES = ("ok", "no_answer", "ambiguous", "timeout", "error")


@dataclass(frozen=True)
class Grade:
    """The outcome of grading one response."""

    extracted: str | None  # the final answer string pulled from the response (None if none found)
    correct: bool
    format_ok: bool  # response has <think> ... </think> followed by a \boxed{...} answer
    status: str  # "ok" | "no_answer" | "ambiguous" | "timeout" | "error"


def reward(g: Grade, accuracy_weight: float = 0.9, format_weight: float = 0.1) -> float:
    """RL reward of paper §2.2: ``accuracy_weight * correct + format_weight * format_ok``."""
    return accuracy_weight * float(g.correct) + format_weight * float(g.format_ok)


_MATHY_RE = re.compile(r"[\d\\^_{}=+\-*/<>()\[\]|]")


class Grader(VerifierProcess):
    """Grades responses; holds the persistent math-verify child process (a context manager).

    ``timeout_s`` is the per-item deadline for the math-verify part of grading. ``stats`` counts
    ``graded``, ``timeouts``, ``errors``, ``no_answer``, ``ambiguous`` (plus ``verifier_calls``
    and ``worker_starts``). Safe to share between threads; a copy inherited through ``fork``
    starts its own child.
    """

    def __init__(self, timeout_s: float = 5.0, startup_timeout_s: float = 120.0):
        self.timeout_s = float(timeout_s)
        self.stats: dict = {
            "graded": 0,
            "timeouts": 0,
            "errors": 0,
            "no_answer": 0,
            "ambiguous": 0,
            "verifier_calls": 0,
            "worker_starts": 0,
        }
        super().__init__(startup_timeout_s)

    # -- public grading ------------------------------------------------------------------------

    def grade(self, response, answer, answer_type, options=(), precision=None, unit=None) -> Grade:
        """Grade one response against a gold answer (see the module docstring for the rules)."""
        return self._grade(response, answer, answer_type, options, precision, unit, self.timeout_s)

    def grade_many(self, items: Iterable[Mapping]) -> list[Grade]:
        """Grade dicts with keys response, answer, answer_type, options, precision, unit."""
        return [
            self._grade(
                it.get("response"),
                it.get("answer"),
                it.get("answer_type"),
                it.get("options"),
                it.get("precision"),
                it.get("unit"),
                self.timeout_s,
            )
            for it in items
        ]

    # -- internals -------------------------------------------------------------------------------

    def _grade(self, response, answer, answer_type, options, precision, unit, timeout_s) -> Grade:
        if answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
        try:
            fmt = check_format(response) if isinstance(response, str) else False
        except Exception:  # pragma: no cover - check_format is pure string work
            fmt = False
        try:
            g = self._grade_inner(response, answer, answer_type, options, precision, unit, timeout_s, fmt)
        except _Timeout:
            g = Grade(None, False, fmt, "timeout")
        except Exception as exc:
            log.debug("grading error: %s: %s", type(exc).__name__, exc)
            g = Grade(None, False, fmt, "error")
        self._count(g)
        return g

    def _count(self, g: Grade) -> None:
        key = {"timeout": "timeouts", "error": "errors", "no_answer": "no_answer", "ambiguous": "ambiguous"}
        with self._stats_lock:
            self.stats["graded"] += 1
            if g.status in key:
                self.stats[key[g.status]] += 1

    def _grade_inner(self, response, answer, answer_type, options, precision, unit, timeout_s, fmt) -> Grade:
        response = "" if response is None else str(response)
        gold = "" if answer is None else str(answer).strip()
        opts = _as_list(options)
        mc = answer_type == "multiple_choice"
        extracted, status = _extract(response, opts, mc=mc)
        if extracted is None:
            return Grade(None, False, fmt, status)
        try:
            if mc:
                correct, status = self._check_mc(extracted, gold, opts)
            elif answer_type in ("integer", "float"):
                correct, status = self._check_numeric(extracted, gold, answer_type, precision, unit, timeout_s)
            elif answer_type == "text":
                correct, status = self._check_text(extracted, gold, timeout_s)
            else:
                correct, status = self._check_expression(extracted, gold, timeout_s)
        except _Timeout:
            return Grade(extracted, False, fmt, "timeout")
        except Exception as exc:
            log.debug("grading error: %s: %s", type(exc).__name__, exc)
            return Grade(extracted, False, fmt, "error")
        return Grade(extracted, bool(correct), fmt, status)

    @staticmethod
    def _check_mc(extracted: str, gold: str, options: Sequence[str]) -> tuple[bool, str]:
        letter, status = _mc_letter(extracted, options)
        if status == "ambiguous":
            return False, "ambiguous"
        if letter is None:
            return False, "ok"
        if options and OPTION_LETTERS.index(letter) >= len(options):
            return False, "ok"
        return letter == _gold_letter(gold, options), "ok"

    def _check_numeric(self, extracted, gold, answer_type, precision, unit, timeout_s) -> tuple[bool, str]:
        prec = _clean_precision(precision)
        gold_v = _parse_number(gold, unit)
        pred_v = _parse_number(extracted, unit)
        if gold_v is not None and pred_v is not None:
            return _numbers_match(gold_v, pred_v, answer_type, prec), "ok"
        cleaned = _clean_numeric(extracted, unit) or extracted
        res = self._verify(gold, cleaned, 6 if prec is None else prec, timeout_s)
        if gold_v is not None and res.get("value") is not None:
            pred_mv = _safe_fraction(res["value"]) if "/" not in res["value"] else _slash(res["value"])
            if pred_mv is not None:
                return _numbers_match(gold_v, pred_mv, answer_type, prec), "ok"
        return bool(res.get("result")), "ok"

    def _check_text(self, extracted, gold, timeout_s) -> tuple[bool, str]:
        ne, ng = _norm(extracted), _norm(gold)
        if ne and ng:
            if ne == ng:
                return True, "ok"
        elif extracted.strip() == gold.strip():
            return bool(gold.strip()), "ok"
        gv, pv = _parse_number(gold), _parse_number(extracted)
        if gv is not None and pv is not None:
            return _numbers_match(gv, pv, "float", None), "ok"
        if _MATHY_RE.search(gold) or _MATHY_RE.search(extracted):
            return bool(self._verify(gold, extracted, 6, timeout_s).get("result")), "ok"
        return False, "ok"

    def _check_expression(self, extracted, gold, timeout_s) -> tuple[bool, str]:
        if _compact(extracted) == _compact(gold) and _compact(gold):
            return True, "ok"
        gv, pv = _plain_number(_compact(gold)), _plain_number(_compact(extracted))
        if gv is not None and pv is not None:
            return _numbers_match(gv, pv, "float", None), "ok"
        return bool(self._verify(gold, extracted, 6, timeout_s).get("result")), "ok"


# ---------------------------------------------------------------------------------------------- module-wide grader

_GLOBAL: Grader | None = None
_GLOBAL_LOCK = threading.Lock()


def _global_grader() -> Grader:
    global _GLOBAL
    g = _GLOBAL
    if g is None:
        with _GLOBAL_LOCK:
            if _GLOBAL is None:
                _GLOBAL = Grader()
                atexit.register(_GLOBAL.close)
            g = _GLOBAL
    return g


def _reset_global_lock() -> None:
    global _GLOBAL_LOCK
    _GLOBAL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_global_lock)


def grade(
    response: str,
    answer: str,
    answer_type: str,
    options: Sequence[str] = (),
    precision: int | None = None,
    unit: str | None = None,
    timeout_s: float = 5.0,
) -> Grade:
    """Grade one response with the lazily created module-wide ``Grader`` (see ``Grader.grade``)."""
    return _global_grader()._grade(response, answer, answer_type, options, precision, unit, timeout_s)


def grade_row(grader: Grader | None, response: str, row: Mapping) -> Grade:
    """Grade a response to a canonical question row (``grader=None``: the module-wide grader)."""
    g = grader if grader is not None else _global_grader()
    return g._grade(
        response,
        row["answer"],
        row["answer_type"],
        row.get("options"),
        row.get("precision"),
        row.get("unit"),
        g.timeout_s,
    )
