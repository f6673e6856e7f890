"""synergy.generate (hf backend): batching, determinism, EOS bookkeeping, input order."""

from __future__ import annotations

import pytest

from synergy.generate import Completion, SamplingConfig, generate
from synergy.prompts import Prompt


def _prompt(text: str, images=()) -> Prompt:
    content = [{"type": "text", "text": text}] + [{"type": "image"} for _ in images]
    return Prompt([{"role": "user", "content": content}], list(images))


@pytest.fixture
def mixed_prompts(test_images):
    """Text-only and image prompts of different lengths, deliberately not sorted by length."""
    return [
        _prompt("How many red squares are there in the image? Count them carefully please.", test_images[:1]),
        _prompt("What is 3 + 4?"),
        _prompt("How many?", test_images[1:]),
        _prompt("The answer is what, exactly, for this long text-only question about blue circles?"),
        _prompt("Two images: how many squares in total?", test_images),
    ]


def test_shapes_and_token_bookkeeping(tiny_loaded, mixed_prompts):
    model, processor = tiny_loaded
    calls = []
    cfg = SamplingConfig(n=3, max_new_tokens=4, max_batch_sequences=6, seed=1)
    out = generate(model, processor, mixed_prompts, cfg, progress=lambda d, t: calls.append((d, t)))
    assert len(out) == len(mixed_prompts) and all(len(o) == 3 for o in out)
    assert calls[-1] == (5, 5) and len(calls) == 3  # 2 prompts x 3 per call
    for c in (c for o in out for c in o):
        assert isinstance(c, Completion) and 1 <= c.num_tokens <= 4
        assert c.num_tokens == 4 if c.truncated else c.num_tokens <= 4
        assert "<|im_end|>" not in c.text and "<|endoftext|>" not in c.text
    # a random model with a ~300-token vocab almost never emits EOS in 4 steps
    assert sum(c.truncated for o in out for c in o) >= 10


def test_eos_counted_and_not_truncated(tiny_loaded, mixed_prompts):
    model, processor = tiny_loaded
    out = generate(model, processor, mixed_prompts[:2], SamplingConfig(n=32, max_new_tokens=24, seed=3))
    done = [c for o in out for c in o if not c.truncated]
    assert done, "expected some sampled sequences to end with EOS"
    assert all(c.num_tokens <= 24 for c in done)
    assert all(c.num_tokens == 24 for o in out for c in o if c.truncated)
    assert len({c.num_tokens for c in done}) > 1  # sequences stop at different lengths


def test_deterministic_same_seed_and_seeds_differ(tiny_loaded, mixed_prompts):
    model, processor = tiny_loaded
    cfg = SamplingConfig(n=2, max_new_tokens=6, seed=7, max_batch_sequences=4)
    a = generate(model, processor, mixed_prompts, cfg)
    b = generate(model, processor, mixed_prompts, cfg)
    c = generate(model, processor, mixed_prompts, SamplingConfig(n=2, max_new_tokens=6, seed=8, max_batch_sequences=4))
    assert a == b
    assert a != c


def test_greedy_samples_identical(tiny_loaded, mixed_prompts):
    model, processor = tiny_loaded
    out = generate(model, processor, mixed_prompts, SamplingConfig(n=3, temperature=0, max_new_tokens=5))
    assert all(len(o) == 3 and o[0] == o[1] == o[2] for o in out)


def test_order_matches_input(tiny_loaded, mixed_prompts):
    """Each prompt's greedy output is the same alone as inside a (reordered) batch."""
    model, processor = tiny_loaded
    cfg = SamplingConfig(n=1, temperature=0, max_new_tokens=5)
    batched = generate(model, processor, mixed_prompts, cfg)
    reversed_ = generate(model, processor, mixed_prompts[::-1], cfg)
    assert batched == reversed_[::-1]
    for p, o in zip(mixed_prompts, batched):
        alone = generate(model, processor, [p], cfg)[0]
        assert alone[0].text == o[0].text


def test_empty_and_invalid():
    with pytest.raises(ValueError):
        SamplingConfig(n=0)
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0)


def test_n_larger_than_batch_limit(tiny_loaded, mixed_prompts):
    model, processor = tiny_loaded
    out = generate(model, processor, mixed_prompts[:2], SamplingConfig(n=5, max_new_tokens=3, max_batch_sequences=2))
    assert [len(o) for o in out] == [5, 5]
    assert len({c.text for c in out[0]}) > 1  # the rounds are seeded differently
