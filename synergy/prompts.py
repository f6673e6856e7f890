"""Chat formatting of a canonical question (paper §2.1; docs/paper.md §2).

The reasoning instruction is appended to the question for fine-tuned models in training and
evaluation; the base model is evaluated without it (paper §2.1, as written). Multiple-choice
options are listed one per line as ``A. text``.

Deviation / choice: the position of the image relative to the question text is configurable
(``image_position``). The embedded tiny model needs the question *before* the image, because a
causal LM can only condition image tokens on text it has already seen (docs/tiny-model.md §3); Qwen's
own examples put the image first. Both orders are legal in the Qwen2.5-VL chat template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

from synergy.rows import OPTION_LETTERS, decode_images

REASONING_INSTRUCTION = (
    "Please reason step by step within <think> </think> tags, and put your final answer within \\boxed{}."
)
IMAGE_POSITIONS = ("before_text", "after_text")


@dataclass(frozen=True)
class Prompt:
    """One chat prompt: messages in the transformers chat format plus its decoded images.

    ``assistant_prefix`` is text placed after the generation prompt (``<|im_start|>assistant\n``):
    generation continues it (progressive SFT & RL, paper §3.1, guides a rollout with the prefix
    of an external trace).
    """

    messages: list[dict]
    images: list[Image.Image] = field(default_factory=list)
    assistant_prefix: str = ""


def format_question(row: Mapping) -> str:
    """Question stem plus the options, one per line (``A. red``), unless ``meta.render_options`` is false
    (the question text or the image already lists them; synergy/data/loaders/benchmarks.py)."""
    text = row["question"].strip()
    options = list(row.get("options") or [])
    if options and _render_options(row):
        lines = [f"{OPTION_LETTERS[i]}. {opt}" for i, opt in enumerate(options)]
        text = text + "\n" + "\n".join(lines)
    return text


def _render_options(row: Mapping) -> bool:
    meta = row.get("meta") or "{}"
    if isinstance(meta, str):
        if "render_options" not in meta:  # fast path: most rows never set it
            return True
        meta = json.loads(meta)
    return bool(meta.get("render_options", True))


def user_text(row: Mapping, reasoning: bool) -> str:
    """The user turn's text: the question (with options), then the reasoning instruction if asked."""
    text = format_question(row)
    return f"{text}\n{REASONING_INSTRUCTION}" if reasoning else text


def build_messages(row: Mapping, reasoning: bool, image_position: str = "after_text", num_images: int | None = None) -> list[dict]:
    """Chat messages for one question; one ``{"type": "image"}`` part per image."""
    if image_position not in IMAGE_POSITIONS:
        raise ValueError(f"image_position must be one of {IMAGE_POSITIONS}, got {image_position!r}")
    n = len(row.get("images") or []) if num_images is None else num_images
    image_parts = [{"type": "image"} for _ in range(n)]
    text_part = [{"type": "text", "text": user_text(row, reasoning)}]
    content = image_parts + text_part if image_position == "before_text" else text_part + image_parts
    return [{"role": "user", "content": content}]


def build_prompt(row: Mapping, reasoning: bool, image_position: str = "after_text", path: str | None = None) -> Prompt:
    """Messages plus decoded images for a canonical row (unreadable images raise DataError)."""
    images = decode_images(row, path)
    return Prompt(build_messages(row, reasoning, image_position, num_images=len(images)), images)
