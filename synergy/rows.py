"""What every layer knows about a canonical question row, below the schema and the prompts.

The answer types, the option letters (A, B, ... by position), ``DataError`` (a row is unusable;
the message names the row id and the file) and image decoding. ``synergy.data.schema`` (the
schema, validation, Arrow tables), ``synergy.prompts`` (chat formatting) and ``synergy.grading``
build on this module and not on each other; it imports only ``synergy.images`` (the image checks,
which import nothing from synergy), and that lazily.
"""

from __future__ import annotations

from collections.abc import Mapping

from PIL import Image

ANSWER_TYPES = ("multiple_choice", "integer", "float", "text", "expression")
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class DataError(ValueError):
    """A row of a question set is unusable; the message names the row id and the file."""


def where(row: Mapping, path: str | None) -> str:
    """``row id='...'`` and `` in FILE`` when the file is known: how an error names a row."""
    rid = row.get("id", "<no id>")
    return f"row id={rid!r}" + (f" in {path}" if path else "")


def decode_images(row: Mapping, path: str | None = None) -> list[Image.Image]:
    """Decode a row's images to RGB PIL images (``synergy.images.decode_image``: the one decoding path);
    an unusable one raises DataError naming the row, the image and why."""
    from synergy.images import ImageProblem, decode_image

    out = []
    for k, blob in enumerate(row.get("images") or []):
        try:
            out.append(decode_image(blob))
        except ImageProblem as exc:
            raise DataError(f"{where(row, path)}: image {k} is {exc}") from exc
    return out
