"""Images as real datasets ship them (synergy/images.py): one decoding path, a test per case.

Accepted forms must come out as the RGB picture a viewer shows (colours checked pixel by pixel) and
go through the tiny model's image processor; refused ones stop with a message naming the row, the
file, the image and the reason, in every stage (docs/reliability.md, bad-input table).
"""
from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synergy.data.schema import DataError, make_row, validate_rows
from synergy.images import MAX_PIXELS, decode_image
from synergy.prompts import build_prompt

ROOT = Path(__file__).resolve().parent.parent
RED, WHITE = (255, 0, 0), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def px(im: Image.Image, xy) -> tuple[int, int, int]:
    return im.getpixel(xy)


def near(a, b, tol=6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def row_with(blob: bytes) -> dict:
    return make_row(id="odd/0001", bench="odd", question="What is shown?", answer="1", answer_type="integer",
                    images=[blob])


def decoded(blob: bytes) -> Image.Image:
    """The row's image as every stage gets it: validated, then decoded by build_prompt."""
    row = row_with(blob)
    validate_rows([row], "odd.parquet")
    [im] = build_prompt(row, reasoning=False, path="odd.parquet").images
    assert im.mode == "RGB"
    return im


def red_square_on(mode_bg: str, background) -> Image.Image:
    im = Image.new(mode_bg, (20, 20), background)
    im.paste(Image.new(mode_bg, (10, 10), RED + (255,) if len(mode_bg) == 4 else RED), (0, 0))
    return im


# ------------------------------------------------------------------------------------------- accepted


def test_cmyk_jpeg_becomes_rgb():
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no black, full magenta + yellow: red
    out = decoded(encode(im, "JPEG", quality=95))
    assert near(px(out, (8, 8)), RED, tol=12)


def test_palette_png_becomes_rgb():
    out = decoded(encode(red_square_on("RGB", WHITE).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    assert px(out, (2, 2)) == RED and px(out, (15, 15)) == WHITE


def test_palette_png_with_a_transparent_index_is_composited_on_white():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)      # index 0 black (transparent), index 1 red
    im.paste(1, (0, 0, 10, 10))
    out = decoded(encode(im, "PNG", transparency=0))
    assert px(out, (2, 2)) == RED and px(out, (15, 15)) == WHITE  # the naive convert("RGB") gives black here


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    arr = np.zeros((8, 16), dtype=np.uint16)
    arr[:, :8], arr[:, 8:] = 32896, 65535               # mid grey and white in 16 bits
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    blob = encode(im, "PNG")
    assert Image.open(io.BytesIO(blob)).mode.startswith("I")
    out = decoded(blob)
    assert px(out, (2, 2)) == (128, 128, 128) and px(out, (12, 2)) == WHITE


def test_rgba_with_transparent_background_is_composited_on_white():
    im = Image.new("RGBA", (20, 20), (0, 0, 0, 0))       # transparent black: shown as white, not black
    im.paste(Image.new("RGBA", (10, 10), (255, 0, 0, 255)), (0, 0))
    im.putpixel((15, 2), (255, 0, 0, 128))               # half-transparent red
    out = decoded(encode(im, "PNG"))
    assert px(out, (2, 2)) == RED and px(out, (15, 15)) == WHITE and near(px(out, (15, 2)), (255, 127, 127), tol=1)


def test_greyscale_with_alpha_is_composited_on_white():
    im = Image.new("LA", (10, 10), (0, 0))
    im.putpixel((1, 1), (0, 255))
    out = decoded(encode(im, "PNG"))
    assert px(out, (1, 1)) == (0, 0, 0) and px(out, (5, 5)) == WHITE


def test_exif_rotated_jpeg_is_shown_upright():
    im = Image.new("RGB", (40, 20), WHITE)
    im.paste(Image.new("RGB", (20, 20), RED), (0, 0))     # stored: red on the left, 40 wide
    exif = Image.Exif()
    exif[0x0112] = 6                                     # orientation 6: a viewer turns it 90 degrees clockwise
    out = decoded(encode(im, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)                          # upright: 20 wide, 40 high, red on top
    assert near(px(out, (10, 5)), RED, tol=12) and near(px(out, (10, 35)), WHITE, tol=12)


def test_one_pixel_image_goes_through_the_models_processor(tiny_model_bundle):
    out = decoded(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert out.size == (1, 1) and px(out, (0, 0)) == RED
    grid = tiny_model_bundle.processor.image_processor(images=[out], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 4]]                  # scaled up to the model's 56 px


def test_a_one_frame_gif_is_decoded():
    out = decoded(encode(red_square_on("RGB", WHITE).convert("P"), "GIF"))
    assert px(out, (2, 2)) == RED and px(out, (15, 15)) == WHITE


def test_every_accepted_image_goes_through_the_models_processor(tiny_model_bundle):
    blobs = [encode(Image.new("CMYK", (30, 20)), "JPEG"), encode(Image.new("RGBA", (20, 30)), "PNG"),
             encode(Image.fromarray(np.full((9, 9), 40000, np.uint16)), "PNG"), encode(Image.new("1", (7, 3)), "PNG")]
    images = [decoded(b) for b in blobs]
    grid = tiny_model_bundle.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
    assert len(grid) == len(blobs)


# -------------------------------------------------------------------------------------------- refused


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (10, 10), colour) for colour in ("red", "green", "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _bomb() -> bytes:
    return encode(Image.new("1", (8000, 8000)), "PNG")  # 64 megapixels in ~8 kB


REFUSED = [
    ("decompression bomb", _bomb,
     rf"image 0 is refused: 8000x8000 = 64000000 pixels is more than the limit of {MAX_PIXELS}"),
    ("SVG", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
     r"image 0 is unreadable \(an SVG \(vector\) file, which is not decoded: rasterise it to PNG first\)"),
    ("text file", lambda: b"id,answer\n1,7\n", r"image 0 is unreadable \(text, not an image: 'id,answer\\n1,7\\n'\)"),
    ("HTML page", lambda: b"<!DOCTYPE html><html><body>404</body></html>",
     r"image 0 is unreadable \(an HTML page, not an image"),
    ("Git LFS pointer", lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n",
     r"image 0 is unreadable \(a Git LFS pointer"),
    ("animated GIF", _animated_gif, r"image 0 is refused: an animated or multi-page GIF with 3 frames"),
    ("aspect ratio 300:1", lambda: encode(Image.new("RGB", (300, 1)), "PNG"),
     r"image 0 is refused: 300x1 has an aspect ratio above 200:1"),
]


@pytest.mark.parametrize("case,make,message", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_image_names_row_file_and_reason_when_checked_and_when_decoded(case, make, message):
    row = row_with(make())
    with pytest.raises(DataError, match=r"row id='odd/0001' in odd\.parquet: " + message):
        validate_rows([row], "odd.parquet")
    with pytest.raises(DataError, match=r"row id='odd/0001' in odd\.parquet: " + message):
        build_prompt(row, reasoning=False, path="odd.parquet")


def test_a_bomb_is_refused_from_its_header_without_decoding():
    blob = _bomb()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="pixels is more than the limit"):
        decode_image(blob)
    assert time.perf_counter() - t0 < 1.0  # decoding 64 M pixels to RGB would take seconds and 192 MB


def test_images_are_opened_only_by_synergy_images():
    """One decoding path: no other module of the pipeline opens or converts an image itself."""
    offenders = []
    for folder in ("synergy", "scripts", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "synergy/images.py":
                continue
            text = path.read_text()
            if re.search(r"Image\.open\(|\.convert\(\s*[\"']RGB[\"']\s*\)", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders
