"""benchmarks/probe_sight.py: the gold answer's loss with the question's own picture and with another's."""
import importlib.util
import io
import json
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from synergy.data.schema import make_row

_spec = importlib.util.spec_from_file_location("probe_sight", Path(__file__).parents[1] / "benchmarks/probe_sight.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def _png(colour: str, box) -> bytes:
    im = Image.new("RGB", (56, 56), "white")
    ImageDraw.Draw(im).rectangle(box, fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _rows():
    meta = json.dumps({"template": "colour_at"})
    pics = [("red", (8, 8, 28, 28)), ("blue", (30, 20, 50, 44)), ("green", (4, 30, 20, 50))]
    rows = [make_row(id=f"b/{i}", bench="b", question="What colour is the shape?", options=["red", "blue", "green"],
                     answer="ABC"[i], answer_type="multiple_choice", images=[_png(*p)], source="test", meta=meta)
            for i, p in enumerate(pics)]
    text = make_row(id="b/9", bench="b", question="What is 3 + 4?", answer="7", answer_type="integer", source="test",
                    meta=json.dumps({"template": "arith"}))
    return rows + [text]


def test_the_picture_changes_the_answer_loss_and_the_same_picture_does_not(tiny_loaded):
    model, processor = tiny_loaded
    rows = _rows()[:3]
    gold = [f"The answer is {r['answer']}." for r in rows]
    own = probe.answer_loss(model, processor, rows, gold, "after_text")
    again = probe.answer_loss(model, processor, [dict(r) for r in rows], gold, "after_text")
    swapped = probe.answer_loss(model, processor, [{**r, "images": o["images"]} for r, o in zip(rows, rows[1:] + rows[:1])],
                                gold, "after_text")
    assert own == again
    assert all(v > 0 for v in own) and own != swapped


def test_the_table_has_one_row_per_picture_template(tmp_path, tiny_model_dir, capsys):
    root = tmp_path / "results/s"
    (root / "models").mkdir(parents=True)
    (root / "models/base").symlink_to(tiny_model_dir)
    (root / "data/bench").mkdir(parents=True)
    pl.DataFrame(_rows()).write_parquet(root / "data/bench/b.parquet")
    assert probe.main([str(root)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| colour_at")]
    assert len(lines) == 1 and lines[0].split("|")[2].strip() == "3"
    assert "arith" not in out   # a question without a picture has nothing to swap
    assert "mean gap over templates" in out
