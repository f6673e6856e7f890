"""The one way question images are checked and decoded (docs/reliability.md).

Rows keep images as encoded bytes (``images`` column of ``synergy.data.schema``). Every stage that
shows an image to a model (pretraining, SFT, GRPO rollouts, difficulty sampling, evaluation) decodes
it through ``synergy.prompts.build_prompt`` -> ``synergy.data.schema.decode_images`` -> ``decode_image``
here, and every loader and stage that checks rows uses ``check_image`` (through ``validate_row``).
The paper feeds dataset images to Qwen2.5-VL's processor, which expects RGB; datasets ship images
in many forms, so this module turns each into the RGB picture a viewer would show, or refuses it
with the reason (``ImageProblem``; the schema adds the row id and file):

| input | result |
|---|---|
| RGB, greyscale (``L``, ``1``), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` | converted to RGB |
| palette (``P``) with or without transparency; RGBA, LA, premultiplied; a transparent colour key | composited on white, then RGB |
| 16-bit greyscale (``I;16``, ``I``) | scaled to 8 bits (value >> 8), not clipped at 255 |
| 32-bit float greyscale (``F``) | values in [0, 1] scaled by 255, else clipped to [0, 255] |
| EXIF orientation tag (rotated or mirrored JPEG) | orientation applied, as a viewer shows it |
| a 1x1 (or any small) image | kept: the model's processor scales it up |
| an aspect ratio beyond ``MAX_ASPECT_RATIO`` (200:1) | refused: Qwen2.5-VL's image processor cannot resize it |
| more than ``MAX_PIXELS`` pixels (decompression bomb sized) | refused from the header, before decoding |
| an animated GIF / PNG / WebP or multi-page TIFF | refused: which frame the question means is unknown (a one-frame GIF is fine) |
| SVG, HTML, text, a Git LFS pointer, empty or corrupt bytes | refused as unreadable, saying what the bytes are |

Choice: a multi-frame image is refused rather than cut to its first frame, because a question about
an animation may need a later frame, and a silently dropped frame would change the question.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000
"""Largest width x height decoded (~150 MB as RGB; far above any benchmark image, below PIL's bomb limit)."""
MAX_ASPECT_RATIO = 200
"""Longest side / shortest side that Qwen2.5-VL's image processor (``smart_resize``) accepts."""
BACKGROUND = (255, 255, 255)
"""Transparent pixels are shown on white, as a page or viewer shows them."""


class ImageProblem(ValueError):
    """An image that cannot be used; the message says why (the caller adds the row and file)."""


def _what_it_is(blob: bytes) -> str:
    """A short description of bytes PIL could not identify."""
    if not blob:
        return "empty bytes"
    head = blob[:512].lstrip()
    low = head.lower()
    if low.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the image (fetch the files with `git lfs pull`)"
    if b"<svg" in low[:400] or (low.startswith(b"<?xml") and b"svg" in low):
        return "an SVG (vector) file, which is not decoded: rasterise it to PNG first"
    if low.startswith((b"<!doctype html", b"<html")):
        return "an HTML page, not an image (a failed download?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an image format PIL knows"
    if text.isprintable() or all(ch.isprintable() or ch.isspace() for ch in text):
        return f"text, not an image: {text[:40]!r}"
    return "not an image format PIL knows"


def _open(blob: bytes) -> Image.Image:
    """Open lazily (header only) and check size, aspect ratio and frames before anything is decoded."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ImageProblem(f"expected encoded image bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(blob))
        except Image.DecompressionBombError as exc:  # past PIL's own limit (2x its warning limit)
            raise ImageProblem(f"refused: {exc}") from exc
        except Exception as exc:  # UnidentifiedImageError and the many errors of corrupt headers
            what = _what_it_is(blob)
            detail = f"{type(exc).__name__}: {exc}" if what == "not an image format PIL knows" else what
            raise ImageProblem(f"unreadable ({detail})") from exc
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageProblem(f"refused: {w}x{h} = {w * h} pixels is more than the limit of {MAX_PIXELS} "
                           "(synergy.images.MAX_PIXELS; a decompression bomb, or an image to scale down first)")
    if w < 1 or h < 1:
        raise ImageProblem(f"unreadable (size {w}x{h})")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise ImageProblem(f"refused: {w}x{h} has an aspect ratio above {MAX_ASPECT_RATIO}:1, which Qwen2.5-VL's "
                           "image processor cannot resize; pad or crop it")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise ImageProblem(f"refused: an animated or multi-page {im.format} with {frames} frames; which frame "
                           "the question means is unknown: store that frame as a PNG")
    return im


def check_image(blob: bytes) -> None:
    """Raise ImageProblem unless ``blob`` is an image ``decode_image`` accepts (header checks, then PIL's verify)."""
    im = _open(blob)
    try:
        im.verify()
    except Exception as exc:
        raise ImageProblem(f"unreadable ({type(exc).__name__}: {exc})") from exc


def _to_8bit_grey(im: Image.Image) -> Image.Image:
    arr = np.asarray(im)
    if im.mode == "F":
        arr = arr * 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else arr
        return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8), "L")
    arr = arr.astype(np.int64)
    if im.mode.startswith("I;16") or arr.max(initial=0) > 255:
        arr = np.clip(arr, 0, 65535) >> 8
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """The RGB picture a viewer shows: EXIF orientation applied, transparency on white, 16-bit scaled."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("RGBa", "La"):
        im = im.convert(im.mode.upper())
    if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):  # a palette, or a tRNS colour key
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("PA", "LA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        canvas = Image.new("RGB", im.size, BACKGROUND)
        canvas.paste(im, mask=im.getchannel("A"))
        return canvas
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit_grey(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def decode_image(blob: bytes) -> Image.Image:
    """Decode encoded image bytes to an RGB PIL image (``to_rgb``), or raise ImageProblem saying why not."""
    im = _open(blob)
    try:
        im.load()
        return to_rgb(im)
    except ImageProblem:
        raise
    except Exception as exc:  # truncated data and the like surface when the pixels are read
        raise ImageProblem(f"unreadable ({type(exc).__name__}: {exc})") from exc


__all__ = ["BACKGROUND", "MAX_ASPECT_RATIO", "MAX_PIXELS", "ImageProblem", "check_image", "decode_image", "to_rgb"]
