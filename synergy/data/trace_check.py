"""How many of the steps a model writes about a picture are true: the share of trace steps right.

A long-CoT answer of the embedded suite states facts about the picture before it reasons: objects
("a red circle in row 1, column 2"), counts ("There are 3 red shapes.", "There are 2 circles.") and bar
heights ("The red bar has height 3.", "a red bar of height 3"). Each statement found is checked
against the scene the question was drawn from (``meta.scene`` of a synthetic row, ``Scene.key``
format); the share that is true measures whether the SFT model learned the decomposition the traces
teach (docs/embedded-study.md §4). Statements about the reasoning itself (sums, comparisons) are not
checked here: their correctness is what the grader measures.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from synergy.data.synthetic import COLOURS, PLURAL, SHAPES

_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_OBJ = re.compile(rf"\b({_C}) ({_S}) in row (\d), column (\d)")
_COUNT_COLOUR = re.compile(rf"\b(?:There (?:are|is)|That is) (\d+) ({_C}) shapes?\b")
_COUNT_SHAPE = re.compile(rf"\b(?:There (?:are|is)|That is) (\d+) ({'|'.join(list(PLURAL.values()) + list(SHAPES))})\b")
_SURVEY_COLOUR = re.compile(rf"\b({_C}) shapes: (\d+)")
_SURVEY_SHAPE = re.compile(r"\b(circles|squares|triangles): (\d+)")
_BAR = re.compile(rf"\b(?:The ({_C}) bar (?:has|reaches) height (\d+)|a ({_C}) bar of height (\d+))")
_SINGULAR = {v: k for k, v in PLURAL.items()} | {s: s for s in SHAPES}
_INITIAL_C = {c[0]: c for c in COLOURS}
_INITIAL_S = {s[0]: s for s in SHAPES}


@dataclass(frozen=True)
class SceneFacts:
    objects: frozenset[tuple[int, int, str, str]]     # (row, col, colour, shape)
    bars: dict[str, int]

    @classmethod
    def parse(cls, key: str) -> SceneFacts:
        kind, _, body = key.partition(":")
        if kind == "bars":
            bars = {}
            for part in filter(None, body.split(",")):
                m = re.fullmatch(r"([a-z]+?)(\d+)", part)
                if not m:
                    raise ValueError(f"bad bar in scene key {key!r}: {part!r}")
                bars[m.group(1)] = int(m.group(2))
            return cls(frozenset(), bars)
        if kind != "shapes":
            raise ValueError(f"unknown scene kind in key {key!r}")
        objs = set()
        for part in filter(None, body.split(",")):
            if len(part) != 4:
                raise ValueError(f"bad object in scene key {key!r}: {part!r}")
            objs.add((int(part[0]), int(part[1]), _INITIAL_C[part[2]], _INITIAL_S[part[3]]))
        return cls(frozenset(objs), {})


def check_steps(response: str, scene: SceneFacts) -> tuple[int, int]:
    """(statements found, statements true) in one response."""
    found = true = 0
    colours = Counter(o[2] for o in scene.objects)
    shapes = Counter(o[3] for o in scene.objects)
    for m in _OBJ.finditer(response):
        found += 1
        true += (int(m.group(3)), int(m.group(4)), m.group(1), m.group(2)) in scene.objects
    for m in _COUNT_COLOUR.finditer(response):
        found += 1
        true += int(m.group(1)) == colours[m.group(2)]
    for m in _COUNT_SHAPE.finditer(response):
        found += 1
        true += int(m.group(1)) == shapes[_SINGULAR[m.group(2)]]
    for m in _SURVEY_COLOUR.finditer(response):
        found += 1
        true += int(m.group(2)) == colours[m.group(1)]
    for m in _SURVEY_SHAPE.finditer(response):
        found += 1
        true += int(m.group(2)) == shapes[_SINGULAR[m.group(1)]]
    for m in _BAR.finditer(response):
        colour, height = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        found += 1
        true += scene.bars.get(colour) == int(height)
    return found, true
