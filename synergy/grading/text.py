"""Normalisation shared by extraction and matching: ``\\text{}`` unwrapping, decoration, casefolded forms."""

from __future__ import annotations

import re

_TEXT_WRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|mathrm|mathbf|mathit|mathsf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SPACING_RE = re.compile(r"\\[,;:!> ]|\\quad|\\qquad|~|\\left|\\right|\\displaystyle|\\mathrm\{\s*\}")


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


def _compact(s: str) -> str:
    s = _unwrap_text(s).replace("$", "")
    s = _SPACING_RE.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return re.sub(r"\s+", "", s)
