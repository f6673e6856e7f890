"""Shared pytest fixtures: a tiny Qwen2.5-VL saved to disk once per session, and test images."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from PIL import Image, ImageDraw

torch.set_num_threads(2)

# Smaller than the default TinyModelConfig, for speed (4 visual tokens per 56 px image).
TEST_MODEL_KWARGS = dict(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=128,
    vision_depth=2,
    vision_hidden_size=64,
    vision_heads=4,
    vision_intermediate_size=128,
    image_size=56,
    seed=0,
)


def synthetic_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """A few hundred lines of text like the study's: questions, CoT traces, short answers."""
    rng = random.Random(seed)
    colours, shapes = ["red", "green", "blue", "yellow"], ["circles", "squares", "triangles"]
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        c, s = rng.choice(colours), rng.choice(shapes)
        lines.append(f"How many {c} {s} are there in the image?")
        lines.append(f"<think> I count {a} {c} {s} and {b} more, so {a} + {b} = {a + b}. </think> \\boxed{{{a + b}}}")
        lines.append(f"The answer is {rng.randint(0, 9)}.")
    lines.append("You are a helpful assistant. system user assistant")
    lines.append("Please reason step by step within <think> </think> tags, and put your final answer within \\boxed{}.")
    return lines


@pytest.fixture(scope="session")
def tiny_model_bundle(tmp_path_factory):
    """The in-memory tiny model, its tokenizer and processor, and the folder it was saved to."""
    from synergy.models import save_model
    from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

    cfg = TinyModelConfig(**TEST_MODEL_KWARGS)
    tokenizer = train_tokenizer(synthetic_corpus(), vocab_size=512)
    processor = build_processor(tokenizer, cfg.image_size)
    model = build_tiny_model(cfg, tokenizer)
    path = tmp_path_factory.mktemp("tiny") / "model"
    save_model(model, processor, path)
    return SimpleNamespace(model=model, processor=processor, tokenizer=tokenizer, path=path, cfg=cfg)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_bundle):
    """Path of a saved tiny Qwen2.5-VL folder (model + processor, safetensors)."""
    return tiny_model_bundle.path


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    """(model, processor) loaded from ``tiny_model_dir`` with ``load_model`` (shared: don't mutate)."""
    from synergy.models import load_model

    return load_model(tiny_model_dir)


@pytest.fixture
def test_images() -> list[Image.Image]:
    """Two 56x56 RGB images: a red square and a blue one, on white."""
    out = []
    for colour, box in (("red", (8, 8, 28, 28)), ("blue", (30, 20, 50, 44))):
        im = Image.new("RGB", (56, 56), "white")
        ImageDraw.Draw(im).rectangle(box, fill=colour)
        out.append(im)
    return out
