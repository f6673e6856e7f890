"""Answer checking: one grader for difficulty sampling, the RL reward and evaluation.

Implements the answer checking of the paper's §2.2 (the RL reward is ``0.9 * accuracy +
0.1 * format``) and §2.4 (rule-based answer matching for evaluation). The paper additionally
used a Qwen2.5-VL-32B judge for answers the rules could not settle; that judge is a separate,
optional step and is not part of this module.

Extraction order (``extract_answer``):

1. Answer region: the text after the LAST ``</think>``. A ``<think>`` without a closing
   ``</think>`` (thinking was cut off) means there is no answer (status ``"no_answer"``). Without
   think tags the whole response is the region.
2. The LAST ``\\boxed{...}`` / ``\\fbox{...}`` in the region with balanced (nested) braces;
   ``\\boxed{\\boxed{5}}`` is unwrapped to ``5``; an empty or unclosed box is skipped.
3. Else the last ``<answer>...</answer>`` tag (the lmms-eval "reasoning" format).
4. Else the last "answer is X" / "Answer: X" / "final answer: X" / "correct option is X" pattern;
   X runs to the end of the sentence or line (or to ", which/so/because ..."); a trailing
   period, ``$`` and ``**`` are stripped.
5. Else, for multiple choice, one option letter standing alone in the region ("(B)", "B.",
   "B)", "Option B", a line holding only "B"; several different ones -> ``"ambiguous"``), or a
   region / last line equal to an option's text (normalised). Else, for every type, the region
   itself when it is one line of at most 40 characters (a bare number or expression).
6. Nothing -> ``(None, "no_answer")``.

Design choices:

1. One module, one rule set for all three uses, so a difficulty tag, a reward and a reported
   accuracy always agree on what "correct" means.
2. Multiple choice: the extracted string is mapped to exactly one letter (decorated letter,
   "Option B", ``\\text{B}``, an option's text, "B. blue"); several different letters are
   ``"ambiguous"`` and wrong; letters beyond the options are wrong; there is never a random
   fallback (lmms-eval's MMMU parser guesses; we do not).
3. Numbers (``integer`` / ``float``): units (the row's ``unit`` and common ones, %, degrees),
   ``$``, thousands commas, ``\\text{}``, thin spaces and a leading ``x =`` are stripped; the
   value is parsed exactly as a fraction (decimals, ``\\frac``/``\\dfrac``, ``a/b``, scientific
   notation, number words up to twenty). Integers compare exactly (3.0 == 3); floats compare
   after rounding both to ``precision`` decimals (half up) or, without a precision, with a
   relative tolerance of 1e-6 / agreement at 6 decimals (math-verify's rounding).
4. ``text``: normalised string equality (casefold, ``\\text{}`` removed, punctuation and spaces
   removed); math-verify only when either side looks mathematical.
5. ``expression`` (and every fallback): math-verify ``verify(parse(gold), parse(pred))`` with
   LaTeX + plain-expression extraction, gold first, strings wrapped in ``$...$`` when they carry
   no LaTeX environment. Cheap exact checks (normalised string equality, two plain numbers) run
   first.
6. Time limit: math-verify's own ``signal.alarm`` timeouts are disabled (they fail outside the
   main thread); its calls run in a persistent child process (``synergy._verify_worker``, JSON
   lines over pipes, started with ``subprocess.Popen`` so it also works inside daemonic
   multiprocessing workers). On the per-item deadline the child is killed and restarted lazily,
   and the item gets status ``"timeout"`` (wrong). Starting a child (about 1-2 s: importing
   sympy and the ANTLR parser) has its own limit and is not charged to the item's deadline; the
   child caps its address space (``SYNERGY_VERIFY_MAX_MEM_MB``, default 4096) and exits when its
   parent dies. Fast paths never touch the child.
7. Grading never raises for any response string: an exception gives status ``"error"`` (wrong).
   ``Grader.stats`` counts graded items, timeouts, errors, no-answers and ambiguous answers so
   callers can report them.
8. Thread and fork safe: a lock guards the child; a grader inherited through ``fork`` drops the
   parent's child process and starts its own.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

from synergy.data.schema import ANSWER_TYPES, OPTION_LETTERS

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_answer", "ambiguous", "timeout", "error")

FORMAT_NOTE = (
    "format_ok is True iff the response (leading whitespace allowed) starts with <think>, contains "
    "exactly one <think> and exactly one </think> in that order with non-empty text between them, "
    "and the text after </think> contains a \\boxed{...} with balanced braces and non-empty content."
)
"""The format rule of the reward's format term (paper §2.2), as checked by ``check_format``."""


@dataclass(frozen=True)
class Grade:
    """The outcome of grading one response."""

    extracted: str | None  # the final answer string pulled from the response (None if none found)
    correct: bool
    format_ok: bool  # response has <think> ... </think> followed by a \boxed{...} answer
    status: str  # "ok" | "no_answer" | "ambiguous" | "timeout" | "error"


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_ANSWER_RE = re.compile(
    r"(?:\bfinal\s+answer|\bcorrect\s+(?:answer|option|choice)|\banswer)"
    r"\s*(?:\*\*)?\s*(?:is\s*(?:\*\*)?\s*[:：]?|[:：]|=)[ \t]*(?:\*\*)?\s*([^\n]*)",
    re.I,
)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|,\s+(?:which|so|since|because|as|that|where|and\s+(?:this|that|so|thus))\b", re.I)
_TEXT_WRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|mathrm|mathbf|mathit|mathsf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_MAX_SHORT_REGION = 40


def _balanced(text: str, start: int) -> str | None:
    """Content from ``start`` (just after an opening brace) to its matching brace, or None."""
    depth = 1
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # escaped character (\{ \} \\) never changes the depth
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each opening brace -> index of its matching closing brace (one linear pass)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # escaped character (\{ \} \\) never opens or closes a group
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{}``/``\\fbox{}`` (innermost when nested)."""
    starts = list(_BOX_RE.finditer(text))
    if not starts:
        return None
    pairs = _brace_pairs(text)
    for m in reversed(starts):
        close = pairs.get(m.end() - 1)
        if close is None:
            continue
        content = text[m.end() : close].strip()
        while True:  # \boxed{\boxed{5}} -> 5 (the reverse scan already prefers the inner box)
            inner = _BOX_RE.match(content)
            if not inner:
                break
            sub = _balanced(content, inner.end())
            if sub is None or inner.end() + len(sub) + 1 != len(content):
                break
            content = sub.strip()
        if content:
            return content
    return None


def _unwrap_text(s: str) -> str:
    for _ in range(8):
        new = _TEXT_WRAP_RE.sub(lambda m: m.group(1), s)
        if new == s:
            break
        s = new
    return s


def _strip_decoration(s: str) -> str:
    """Strip surrounding whitespace, markdown bold, math delimiters and a trailing period."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip()
        for a, b in (("**", "**"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
                s = s[len(a) : len(s) - len(b)]
        s = s.strip()
        s = s.strip("*").strip()
        if s.startswith("$"):
            s = s[1:]
        if s.endswith("$"):
            s = s[:-1]
        s = s.rstrip(".,;:").strip() if not s.endswith("\\.") else s
    return s


def _answer_region(response: str) -> str | None:
    close = response.rfind(_THINK_CLOSE)
    if close >= 0:
        return response[close + len(_THINK_CLOSE) :]
    if _THINK_OPEN in response:
        return None  # thinking was cut off: no answer was given
    return response


def _pattern_answer(region: str) -> str | None:
    found = None
    for m in _ANSWER_RE.finditer(region):
        x = m.group(1)
        end = _SENTENCE_END_RE.search(x)
        if end:
            x = x[: end.start()]
        x = _strip_decoration(x)
        if x:
            found = x
    return found


_LETTER_PATTERNS = (
    re.compile(r"\(\s*([A-Z])\s*\)"),
    re.compile(r"(?:^|(?<=\s))([A-Z])[.)](?=\s|$)"),
    re.compile(r"(?i:\b(?:option|choice))\s*\(?([A-Z])\)?(?![A-Za-z0-9])"),
    re.compile(r"^[\W_]*([A-Z])[\W_]*$", re.M),
)


def _mc_region_answer(region: str, options: Sequence[str]) -> tuple[str | None, str]:
    """A single option letter standing alone in the region, or an option's exact text."""
    n = len(options)
    letters = []
    for pat in _LETTER_PATTERNS:
        for m in pat.finditer(region):
            letter = m.group(1)
            if (not n or OPTION_LETTERS.index(letter) < n) and letter not in letters:
                letters.append(letter)
    if len(letters) == 1:
        return letters[0], "ok"
    if len(letters) > 1:
        return None, "ambiguous"
    if options:
        lines = [ln for ln in region.strip().splitlines() if ln.strip()]
        candidates = [region] + lines[-1:]
        norms = [_norm(o) for o in options]
        for cand in candidates:
            c = _norm(cand)
            if c and c in norms:
                return options[norms.index(c)], "ok"
    return None, "no_answer"


def _extract(response: str, options: Sequence[str], mc: bool) -> tuple[str | None, str]:
    region = _answer_region(response)
    if region is None or not region.strip():
        return None, "no_answer"
    boxed = _last_boxed(region)
    if boxed is not None:
        return boxed, "ok"
    tags = [_strip_decoration(t) for t in _ANSWER_TAG_RE.findall(region)]
    tags = [t for t in tags if t]
    if tags:
        return tags[-1], "ok"
    pat = _pattern_answer(region)
    if pat is not None:
        return pat, "ok"
    if mc:
        ans, status = _mc_region_answer(region, options)
        if ans is not None or status == "ambiguous":
            return ans, status
    short = region.strip()
    if short and "\n" not in short and len(short) <= _MAX_SHORT_REGION:
        short = _strip_decoration(short)
        if short:
            return short, "ok"
    return None, "no_answer"


def extract_answer(response: str, options: Sequence[str] = ()) -> tuple[str | None, str]:
    """The final answer string of a response and a status ("ok", "no_answer" or "ambiguous").

    With ``options`` the multiple-choice fallbacks (a lone option letter, an option's text) apply.
    """
    if not isinstance(response, str):
        response = "" if response is None else str(response)
    opts = _as_list(options)
    return _extract(response, opts, mc=bool(opts))


def check_format(response: str) -> bool:
    """True iff the response follows the reasoning format; see ``FORMAT_NOTE``."""
    if not isinstance(response, str):
        return False
    s = response.lstrip()
    if not s.startswith(_THINK_OPEN):
        return False
    if s.count(_THINK_OPEN) != 1 or s.count(_THINK_CLOSE) != 1:
        return False
    close = s.index(_THINK_CLOSE)
    if not s[len(_THINK_OPEN) : close].strip():
        return False
    return _last_boxed(s[close + len(_THINK_CLOSE) :]) is not None


def reward(g: Grade, accuracy_weight: float = 0.9, format_weight: float = 0.1) -> float:
    """RL reward of paper §2.2: ``accuracy_weight * correct + format_weight * format_ok``."""
    return accuracy_weight * float(g.correct) + format_weight * float(g.format_ok)


# --------------------------------------------------------------------------------------------
# Normalisation and numbers
# --------------------------------------------------------------------------------------------


def _as_list(options) -> list[str]:
    if options is None:
        return []
    if isinstance(options, str):
        return [options] if options else []
    return [str(o) for o in options]


def _norm(s: str) -> str:
    """Casefolded alphanumerics only (``\\text{}`` and ``$`` removed)."""
    return re.sub(r"[\W_]+", "", _unwrap_text(s).replace("$", "").casefold())


def _norm_words(s: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", _unwrap_text(s).replace("$", "").casefold()).split())


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
_SPACING_RE = re.compile(r"\\[,;:!> ]|\\quad|\\qquad|~|\\left|\\right|\\displaystyle|\\mathrm\{\s*\}")
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


# --------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The verifier child process
# --------------------------------------------------------------------------------------------

_REPO_ROOT = str(Path(__file__).resolve().parents[1])
_LATEX_ENV_RE = re.compile(r"\$|\\\(|\\\[|\\boxed|\\begin\{")
_MATHY_RE = re.compile(r"[\d\\^_{}=+\-*/<>()\[\]|]")


class _Timeout(Exception):
    pass


class _VerifierError(Exception):
    pass


def _wrap_math(s: str) -> str:
    s = s.strip()
    return s if _LATEX_ENV_RE.search(s) else f"${s}$"


def _compact(s: str) -> str:
    s = _unwrap_text(s).replace("$", "")
    s = _SPACING_RE.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", s)


class Grader:
    """Grades responses; holds the persistent math-verify child process (a context manager).

    ``timeout_s`` is the per-item deadline for the math-verify part of grading. ``stats`` counts
    ``graded``, ``timeouts``, ``errors``, ``no_answer``, ``ambiguous`` (plus ``verifier_calls``
    and ``worker_starts``). Safe to share between threads; a copy inherited through ``fork``
    starts its own child.
    """

    def __init__(self, timeout_s: float = 5.0, startup_timeout_s: float = 120.0):
        self.timeout_s = float(timeout_s)
        self.startup_timeout_s = float(startup_timeout_s)
        self.stats: dict = {
            "graded": 0,
            "timeouts": 0,
            "errors": 0,
            "no_answer": 0,
            "ambiguous": 0,
            "verifier_calls": 0,
            "worker_starts": 0,
        }
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._next_id = 0
        self._pid = os.getpid()

    # -- context manager / lifetime ------------------------------------------------------------

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stop the child process (a later call that needs it starts a new one)."""
        self._check_fork()
        with self._lock:
            proc, self._proc = self._proc, None
            self._buf = b""
            if proc is None:
                return
            try:
                proc.stdin.close()
                proc.wait(timeout=2)
            except Exception:
                self._kill_proc(proc)
            finally:
                self._close_pipes(proc)

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

    # -- the child process -----------------------------------------------------------------------

    def _verify(self, gold: str, pred: str, float_rounding: int, timeout_s: float) -> dict:
        """math-verify in the child under a deadline; raises _Timeout or _VerifierError."""
        req = {"gold": _wrap_math(gold), "pred": _wrap_math(pred), "float_rounding": int(float_rounding)}
        self._check_fork()
        with self._lock:
            with self._stats_lock:
                self.stats["verifier_calls"] += 1
            proc = self._ensure_proc()
            self._next_id += 1
            req["id"] = self._next_id
            data = (json.dumps(req) + "\n").encode("utf-8")
            deadline = time.monotonic() + max(0.01, float(timeout_s))
            try:
                fd = proc.stdin.fileno()
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                line = self._read_line(proc, deadline)
            except _Timeout:
                self._discard_proc()
                raise
            except (OSError, ValueError, _VerifierError) as exc:
                self._discard_proc()
                raise _VerifierError(f"verifier worker failed: {exc}") from exc
        try:
            resp = json.loads(line)
        except ValueError as exc:
            with self._lock:
                self._discard_proc()
            raise _VerifierError("garbled verifier reply") from exc
        if resp.get("id") != req["id"]:
            with self._lock:
                self._discard_proc()
            raise _VerifierError("verifier reply out of order")
        if not resp.get("ok"):
            raise _VerifierError(resp.get("error", "verifier error"))
        return resp

    def _read_line(self, proc: subprocess.Popen, deadline: float) -> bytes:
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise _Timeout()
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise _VerifierError("verifier worker exited")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _ensure_proc(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._discard_proc()
        env = dict(os.environ)
        env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONHASHSEED", "0")
        proc = subprocess.Popen(
            [sys.executable, "-m", "synergy._verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        self._proc = proc
        self._buf = b""
        with self._stats_lock:
            self.stats["worker_starts"] += 1
        try:
            line = self._read_line(proc, time.monotonic() + self.startup_timeout_s)
            hello = json.loads(line)
        except (_Timeout, _VerifierError, ValueError, OSError) as exc:
            self._discard_proc()
            raise _VerifierError(f"verifier worker did not start: {exc!r}") from None
        if not hello.get("ready"):
            self._discard_proc()
            raise _VerifierError(f"verifier worker failed to start: {hello.get('error')}")
        return proc

    def _discard_proc(self) -> None:
        """Kill the child (caller holds the lock); the next verification starts a new one."""
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None:
            self._kill_proc(proc)
            self._close_pipes(proc)

    @staticmethod
    def _kill_proc(proc: subprocess.Popen) -> None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except Exception:
            pass

    @staticmethod
    def _close_pipes(proc: subprocess.Popen) -> None:
        for f in (proc.stdin, proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def _check_fork(self) -> None:
        """In a forked child, forget the parent's worker and lock (they belong to the parent)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None:
            self._close_pipes(proc)  # our copies of the pipes only; the parent's worker lives on
            proc.returncode = 0  # never wait for / kill a process that is not our child


def _slash(text: str) -> Fraction | None:
    a, _, b = text.partition("/")
    return _div(_safe_fraction(a), _safe_fraction(b))


# --------------------------------------------------------------------------------------------
# Module-level convenience
# --------------------------------------------------------------------------------------------

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
