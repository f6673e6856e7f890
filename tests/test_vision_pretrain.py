"""Perception pretraining of the tiny vision tower (synergy/vision_pretrain.py, docs/embedded-study.md §6)."""
import copy

import pytest
import torch
import yaml
from tiny_study import TINY_ARCHITECTURE

from synergy.config import ConfigError, load_config
from synergy.data.synthetic import Obj, Scene
from synergy.models import freeze_vision
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer
from synergy.vision_pretrain import _directions, cell_code, cell_contents, perception_pretrain, readout_accuracy


def test_cell_contents_follow_the_picture_row_major():
    shapes = Scene("shapes", objects=(Obj(1, 1, "red", "circle"), Obj(2, 4, "blue", "triangle")))
    cells = cell_contents(shapes)
    assert cells[0] == ("red", "circle") and cells[1 * 4 + 3] == ("blue", "triangle")
    assert sum(c is not None for c in cells) == 2
    bars = Scene("bars", bars=(("red", 1), ("green", 4), ("blue", 2), ("yellow", 3)))
    cells = cell_contents(bars)
    assert cells[3 * 4 + 0] == ("red", "bar") and cells[2 * 4 + 0] is None   # height 1: only the bottom row
    assert all(cells[r * 4 + 1] == ("green", "bar") for r in range(4))
    assert sum(c is not None for c in cells) == 1 + 4 + 2 + 3


def test_codes_differ_exactly_where_the_cells_differ():
    d = _directions(32, 0)
    a = cell_code(Scene("shapes", objects=(Obj(1, 1, "red", "circle"),)), d)
    b = cell_code(Scene("shapes", objects=(Obj(1, 1, "red", "square"),)), d)
    assert torch.allclose(a[1:], b[1:]) and not torch.allclose(a[0], b[0])
    assert float(a[0] @ d["colour:red"]) == pytest.approx(1.0, abs=1e-5)  # orthonormal directions


def test_position_code_names_every_cell_and_leaves_the_content_code_alone():
    d = _directions(64, 0, position=True)
    assert len(d) == 26 + 8
    scene = Scene("shapes", objects=(Obj(2, 3, "red", "circle"),))
    code = cell_code(scene, d)
    for i, tok in enumerate(code):
        row, col = divmod(i, 4)
        assert float(tok @ d[f"row:{row + 1}"]) == pytest.approx(1.0, abs=1e-5)
        assert float(tok @ d[f"col:{col + 1}"]) == pytest.approx(1.0, abs=1e-5)
        assert float(tok @ d[f"row:{(row + 1) % 4 + 1}"]) == pytest.approx(0.0, abs=1e-5)
    red = code[1 * 4 + 2]
    assert float(red @ d["colour:red"]) == pytest.approx(1.0, abs=1e-5)
    assert float(code[0] @ d["empty"]) == pytest.approx(1.0, abs=1e-5)
    assert "row:1" not in _directions(64, 0)   # off by default


def test_perception_pretraining_makes_colour_and_kind_readable_and_the_rest_of_the_model_untouched():
    torch.manual_seed(0)
    tok = train_tokenizer(["how many red shapes? The answer is 3."] * 20, 300)
    proc = build_processor(tok, 112)
    model = build_tiny_model(TinyModelConfig(**TINY_ARCHITECTURE), tok)
    lm_before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    d = _directions(TINY_ARCHITECTURE["hidden_size"], 0)
    before = readout_accuracy(model, proc, d, 1, 6, 0.25, 112, n=32)
    stats = perception_pretrain(model, proc, steps=80, batch_size=16, learning_rate=3e-3, seed=0, max_objects=6)
    assert stats["perception_cell_accuracy"] > max(0.9, before["perception_cell_accuracy"] + 0.3), (before, stats)
    assert stats["perception_occupancy_accuracy"] > 0.95
    assert all(torch.equal(v, model.model.language_model.state_dict()[k]) for k, v in lm_before.items())
    assert freeze_vision(model) > 0


def test_config_refuses_a_code_that_does_not_fit():
    cfg = yaml.safe_load(open("config/config.yaml"))
    small = copy.deepcopy(cfg)
    small["base_model"]["tiny"]["hidden_size"] = 16
    small["base_model"]["tiny"]["num_heads"] = 2
    with pytest.raises(ConfigError, match="cell code needs 26 directions"):
        load_config(small)
    small["base_model"]["tiny"]["hidden_size"] = 32
    load_config(small)
    small["base_model"]["pretrain"]["perception_position"] = True
    with pytest.raises(ConfigError, match="cell code needs 34 directions"):
        load_config(small)
    other = copy.deepcopy(cfg)
    other["synthetic"]["image_size"] = 56
    with pytest.raises(ConfigError, match="synthetic.image_size must be 112"):
        load_config(other)
