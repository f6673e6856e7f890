"""The canonical question schema shared by every benchmark and training set.

README.md, "The canonical question schema", describes it for users.

Every loader, synthetic or real, writes rows with exactly these columns, so that prompting,
generation, grading and analysis never branch on where a question came from.

| column      | type            | meaning                                                              |
|-------------|-----------------|----------------------------------------------------------------------|
| id          | string          | unique within a set, e.g. ``synth-count/0007``                       |
| bench       | string          | benchmark or training-set name                                       |
| question    | string          | the question stem, without the options                               |
| options     | list<string>    | option texts for multiple choice (letters A, B, ... by position); [] |
| answer      | string          | gold answer: an option letter for multiple choice, else the value    |
| answer_type | string          | one of ANSWER_TYPES                                                  |
| precision   | int32 (null)    | decimals to round to before comparing ``float`` answers              |
| unit        | string (null)   | unit of a numeric answer, stripped from predictions before comparing |
| images      | list<binary>    | encoded images (PNG/JPEG bytes), in the order the question uses them |
| response    | string (null)   | reference response (SFT trace) ``<think> ... </think> \\boxed{..}``    |
| source      | string          | where the row comes from (generator name or hub id + split)          |
| meta        | string          | JSON object with the source's own fields (category, level, ...)      |
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa

from synergy.rows import ANSWER_TYPES, OPTION_LETTERS, DataError, decode_images
from synergy.rows import where as _where
from synergy.images import ImageProblem, check_image

__all__ = ["ANSWER_TYPES", "COLUMNS", "OPTION_LETTERS", "SCHEMA", "DataError", "decode_images", "make_row",
           "to_table", "validate_row", "validate_rows"]

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("bench", pa.string()),
        ("question", pa.string()),
        ("options", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("precision", pa.int32()),
        ("unit", pa.string()),
        ("images", pa.list_(pa.binary())),
        ("response", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def validate_row(row: Mapping, path: str | None = None, *, require_images: bool = False) -> None:
    """Raise DataError naming the row and file if ``row`` breaks the canonical schema."""
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise DataError(f"{_where(row, path)}: missing columns {missing}")
    if not isinstance(row["id"], str) or not row["id"]:
        raise DataError(f"{_where(row, path)}: empty or non-string id")
    if row["answer"] is None or str(row["answer"]).strip() == "":
        raise DataError(f"{_where(row, path)}: no answer")
    if row["answer_type"] not in ANSWER_TYPES:
        raise DataError(f"{_where(row, path)}: answer_type {row['answer_type']!r} not in {ANSWER_TYPES}")
    options = list(row["options"] or [])
    if row["answer_type"] == "multiple_choice":
        if len(options) < 2:
            raise DataError(f"{_where(row, path)}: multiple choice with {len(options)} options")
        if row["answer"] not in OPTION_LETTERS[: len(options)]:
            raise DataError(f"{_where(row, path)}: answer {row['answer']!r} is not an option letter")
    if require_images and not row["images"]:
        raise DataError(f"{_where(row, path)}: no image")
    for k, blob in enumerate(row["images"] or []):
        try:
            check_image(blob)
        except ImageProblem as exc:
            raise DataError(f"{_where(row, path)}: image {k} is {exc}") from exc
    try:
        meta = json.loads(row["meta"] or "{}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{_where(row, path)}: meta is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{_where(row, path)}: meta is not a JSON object")


def validate_rows(rows: Sequence[Mapping], path: str | None = None, *, require_images: bool = False) -> None:
    """Validate every row and that ids are unique and the set is non-empty."""
    if not rows:
        raise DataError(f"question set {path or ''} is empty".replace("  ", " "))
    seen: set[str] = set()
    for row in rows:
        validate_row(row, path, require_images=require_images)
        if row["id"] in seen:
            raise DataError(f"{_where(row, path)}: duplicate question id")
        seen.add(row["id"])


def make_row(**fields) -> dict:
    """A canonical row with defaults for the optional columns; unknown keys raise."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise TypeError(f"unknown columns {sorted(unknown)}")
    row = {"options": [], "precision": None, "unit": None, "images": [], "response": None, "source": "", "meta": "{}"}
    row.update(fields)
    if isinstance(row["meta"], Mapping):
        row["meta"] = json.dumps(row["meta"], sort_keys=True)
    return row


def to_table(rows: Iterable[Mapping]) -> pa.Table:
    """Rows -> an Arrow table in the canonical schema (column order fixed)."""
    rows = list(rows)
    return pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA)

