"""Matching an extracted answer against the gold one without math-verify: numbers and multiple choice.

Numbers (``integer`` / ``float``) are parsed exactly as fractions after units, delimiters and
decoration are stripped, and compared exactly (integers), at the row's ``precision`` (floats, half
up) or at a relative 1e-6 / 6 decimals. Multiple choice maps the extracted string to exactly one
option letter or to ``"ambiguous"``; there is never a random fallback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from synergy.grading.text import _SPACING_RE, _norm, _norm_words, _strip_decoration, _unwrap_text
from synergy.rows import OPTION_LETTERS

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"{_NUM}")
_FRAC_RE = re.compile(rf"([-+]?)\\[dt]?frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_FRAC_SHORT_RE = re.compile(r"([-+]?)\\[dt]?frac\s*(\d)\s*(\d)")
_SLASH_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})")
_SCI_RE = re.compile(rf"({_NUM})\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{{?\s*([-+]?\d+)\s*\}}?")
_POW10_RE = re.compile(r"10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_NUM_WITH_WORDS_RE = re.compile(rf"({_NUM})\s*[A-Za-z][A-Za-z\s.]*")
_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_COMMON_UNITS = (
    r"square\s+units?|sq\.?\s*units?|units?|degrees?|deg|cm|mm|km|m|kg|mg|g|ml|l|s|sec|seconds?|"
    r"minutes?|mins?|hours?|hrs?|h|inches|inch|in|feet|foot|ft|yards?|yd|miles?|mi|meters?|metres?|"
    r"centimeters?|centimetres?|millimeters?|millimetres?|kilometers?|kilometres?|grams?|kilograms?|"
    r"dollars?|cents?|years?|days?|pounds?|lbs?|points?|people|persons?|percent"
)
_UNIT_TAIL_RE = re.compile(rf"\s*(?:{_COMMON_UNITS})\s*(?:\^\s*\{{?\s*[23]\s*\}}?|²|³)?\s*\.?$", re.I)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree|\\%|%")
_MAX_EXP = 400
_MAX_DIGITS = 2000


def _safe_fraction(text: str) -> Fraction | None:
    m = re.search(r"[eE]([-+]?\d+)$", text)
    if m and abs(int(m.group(1))) > _MAX_EXP:
        return None
    if len(text) > _MAX_DIGITS:
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _div(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _plain_number(s: str) -> Fraction | None:
    """Exact value of a bare numeric string (no units), or None."""
    s = s.strip()
    if not s:
        return None
    if _NUM_RE.fullmatch(s):
        return _safe_fraction(s)
    if m := _FRAC_RE.fullmatch(s) or _FRAC_SHORT_RE.fullmatch(s):
        v = _div(_safe_fraction(m.group(2)), _safe_fraction(m.group(3)))
        return -v if (v is not None and m.group(1) == "-") else v
    if m := _SLASH_RE.fullmatch(s):
        return _div(_safe_fraction(m.group(1)), _safe_fraction(m.group(2)))
    if m := _SCI_RE.fullmatch(s):
        exp = int(m.group(2))
        base = _safe_fraction(m.group(1))
        if base is None or abs(exp) > _MAX_EXP:
            return None
        return base * Fraction(10) ** exp
    if m := _POW10_RE.fullmatch(s):
        exp = int(m.group(1))
        return Fraction(10) ** exp if abs(exp) <= _MAX_EXP else None
    word = s.casefold()
    if word in _WORDS:
        return Fraction(_WORDS[word])
    return None


def _clean_numeric(s: str, unit: str | None) -> str:
    """Strip units, delimiters, spacing and a leading ``x =`` from a numeric answer."""
    s = _unwrap_text(s)
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = s.replace("\\[", "").replace("\\]", "").replace("−", "-").replace("\u2009", " ")
    s = _SPACING_RE.sub(" ", s).strip()
    for rel in ("=", "\\approx", "≈"):
        if rel in s:
            s = s.rsplit(rel, 1)[1].strip()
    s = _DEGREE_RE.sub("", s).strip()
    for cur in ("£", "€", "¥", "US"):
        if s.startswith(cur):
            s = s[len(cur) :].strip()
    if unit:
        u = _unwrap_text(str(unit)).replace("$", "").strip()
        if u and s.casefold().endswith(u.casefold()) and len(s) > len(u):
            s = s[: len(s) - len(u)].strip()
    for _ in range(2):
        s = _UNIT_TAIL_RE.sub("", s).strip() if _UNIT_TAIL_RE.search(s) and len(s) > 1 else s
    s = _DEGREE_RE.sub("", s).strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s.rstrip(".").strip()


def _parse_number(s: str, unit: str | None = None) -> Fraction | None:
    """Exact value of a numeric answer with units and decoration, or None."""
    cleaned = _clean_numeric(s, unit)
    v = _plain_number(cleaned)
    if v is None and (m := _NUM_WITH_WORDS_RE.fullmatch(cleaned)):
        v = _safe_fraction(m.group(1))  # "12 apples" -> 12
    return v


def _round_half_up(x: Fraction, places: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        d = Decimal(x.numerator) / Decimal(x.denominator)
        return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _numbers_match(gold: Fraction, pred: Fraction, answer_type: str, precision: int | None) -> bool:
    if answer_type == "integer":
        return gold == pred
    if gold == pred:
        return True
    if precision is not None and answer_type == "float":
        try:
            return _round_half_up(gold, precision) == _round_half_up(pred, precision)
        except ArithmeticError:
            return False
    try:
        if math.isclose(float(gold), float(pred), rel_tol=1e-6, abs_tol=0.0):
            return True
    except OverflowError:
        pass
    try:
        return _round_half_up(gold, 6) == _round_half_up(pred, 6)
    except ArithmeticError:
        return False


def _clean_precision(precision) -> int | None:
    if precision is None:
        return None
    try:
        p = float(precision)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(p) or p < 0:
        return None
    return min(int(p), 30)



def _slash(text: str) -> Fraction | None:
    a, _, b = text.partition("/")
    return _div(_safe_fraction(a), _safe_fraction(b))



# ---------------------------------------------------------------------------------------------- multiple choice

_MC_BRACKET_RE = re.compile(r"(?:(?:option|choice)\s*)?[\(\[]\s*([A-Za-z])\s*[\)\]](.*)", re.I | re.S)
_MC_BARE_RE = re.compile(r"(?:(?:option|choice)\s*)?([A-Za-z])\s*(?:[.:：)]\s*(.*))?", re.I | re.S)
_MC_LETTER_SCAN_RE = re.compile(r"(?<![A-Za-z0-9\\])([A-Z])(?![A-Za-z0-9])")


def _mc_clean(s: str) -> str:
    s = _unwrap_text(s)
    s = s.replace("**", "").replace("$", "")
    s = re.sub(r"^(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)\s*(?:is\s*)?[:：]?\s*", "", s.strip(), flags=re.I)
    return _strip_decoration(s)


def _mc_letter(extracted: str, options: Sequence[str]) -> tuple[str | None, str]:
    """Map an extracted answer to one option letter: (letter, "ok"), (None, "ambiguous"/"ok")."""
    n = len(options)
    s = _mc_clean(extracted)
    if not s:
        return None, "ok"
    if m := _MC_BRACKET_RE.fullmatch(s):
        return m.group(1).upper(), "ok"
    if m := _MC_BARE_RE.fullmatch(s):
        letter = m.group(1)
        # a bare lowercase letter followed by text is a word ("a cat"), not an option
        if letter.isupper() or not (m.group(2) or "").strip() or s[1:2] in ".:：)":
            return letter.upper(), "ok"
    norms = [_norm(o) for o in options]
    ns = _norm(s)
    if ns and ns in norms:
        return OPTION_LETTERS[norms.index(ns)], "ok"
    scan = re.sub(r"\\[A-Za-z]+", " ", s)
    letters = []
    for m in _MC_LETTER_SCAN_RE.finditer(scan):
        letter = m.group(1)
        if (not n or OPTION_LETTERS.index(letter) < n) and letter not in letters:
            letters.append(letter)
    if len(letters) > 1:
        return None, "ambiguous"
    if len(letters) == 1:
        return letters[0], "ok"
    words = f" {_norm_words(s)} "
    hits = [i for i, o in enumerate(options) if _norm_words(o) and f" {_norm_words(o)} " in words]
    # drop options whose text lies inside another matched option's text ("red" in "dark red")
    hits = [
        i
        for i in hits
        if not any(j != i and f" {_norm_words(options[i])} " in f" {_norm_words(options[j])} " for j in hits)
    ]
    distinct = {_norm_words(options[i]) for i in hits}
    if len(distinct) > 1:
        return None, "ambiguous"
    if hits:
        return OPTION_LETTERS[hits[0]], "ok"
    return None, "ok"


def _gold_letter(answer: str, options: Sequence[str]) -> str | None:
    a = answer.strip()
    if len(a) == 1 and a.upper() in OPTION_LETTERS:
        return a.upper()
    letter, status = _mc_letter(a, options)
    return letter if status == "ok" else None

