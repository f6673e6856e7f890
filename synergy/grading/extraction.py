"""Answer extraction and the format rule (paper §2.2 format reward, §2.4 rule-based answer extraction).

The extraction order of ``extract_answer`` is the one the package docstring lists (answer region
after the last ``</think>``, last box, ``<answer>`` tag, "answer is X" patterns, multiple-choice
letters or option texts, a short bare region).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from synergy.grading.text import _as_list, _norm, _strip_decoration
from synergy.rows import OPTION_LETTERS

FORMAT_NOTE = (
    "format_ok is True iff the response (leading whitespace allowed) starts with <think>, contains "
    "exactly one <think> and exactly one </think> in that order with non-empty text between them, "
    "and the text after </think> contains a \\boxed{...} with balanced braces and non-empty content."
)
"""The format rule of the reward's format term (paper §2.2), as checked by ``check_format``."""


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

