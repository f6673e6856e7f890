"""synergy.generate.decode: the hf backend's own sampling loop against transformers' ``generate``.

Greedy decoding must give generate's tokens exactly, also while finished rows are being dropped;
with dropping switched off, sampling must draw generate's very tokens for the same seed (the same
distribution, the same RNG stream); the logit filter must equal transformers' warpers.
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from synergy.generate.decode import candidates, decode, filter_logits, supports_fast_decode
from synergy.generate.hf import encode_prompts
from synergy.prompts import Prompt


def _prompt(text: str, images=()) -> Prompt:
    content = [{"type": "text", "text": text}] + [{"type": "image"} for _ in images]
    return Prompt([{"role": "user", "content": content}], list(images))


@pytest.fixture
def batch(tiny_loaded, test_images):
    """A left-padded batch mixing text-only prompts, one image and two images."""
    _, processor = tiny_loaded
    prompts = [
        _prompt("How many red squares are there in the image? Count them carefully please.", test_images[:1]),
        _prompt("What is 3 + 4?"),
        _prompt("The answer is what, exactly, for this long text-only question about blue circles?"),
        _prompt("Two images: how many squares in total?", test_images),
    ]
    return encode_prompts(processor, prompts)


def _common(model, processor, **kw):
    return dict(pad_token_id=processor.tokenizer.pad_token_id, repetition_penalty=1.0, **kw)


def _stop_token_that_ends_rows_at_different_steps(model, processor, batch, steps):
    """A token generate's greedy output holds in several rows at several positions (the random model never says EOS)."""
    out = model.generate(**batch, **_common(model, processor, max_new_tokens=steps, do_sample=False,
                                            eos_token_id=[10**6]))
    new = out[:, batch["input_ids"].shape[1]:]
    best = None
    for tok in new.unique().tolist():
        first = [(row == tok).nonzero() for row in new]
        pos = {int(f[0]) for f in first if f.numel()}
        if len(pos) >= 2 and sum(f.numel() > 0 for f in first) < new.shape[0]:
            best = tok
            break
    assert best is not None, "no token stops some rows but not all"
    return best


def test_tiny_model_takes_the_fast_path(tiny_loaded):
    assert supports_fast_decode(tiny_loaded[0])


def test_greedy_equals_generate_while_rows_drop_out(tiny_loaded, batch):
    model, processor = tiny_loaded
    stop = _stop_token_that_ends_rows_at_different_steps(model, processor, batch, 16)
    kw = _common(model, processor, max_new_tokens=16, do_sample=False, eos_token_id=[stop])
    ref = model.generate(**batch, **kw)
    mine = decode(model, **batch, **kw, compact_fraction=0.01)  # drop finished rows at every chance
    assert mine.shape == ref.shape
    assert torch.equal(mine, ref)
    L = batch["input_ids"].shape[1]
    ended = (mine[:, L:] == stop).any(1)
    assert ended.any() and not ended.all()  # rows did stop at different steps


def test_sampling_without_dropping_draws_generates_tokens(tiny_loaded, batch):
    model, processor = tiny_loaded
    # top_k 0: a top-k draw runs over the k candidates only (test_candidates_...), which uses the RNG differently
    kw = _common(model, processor, max_new_tokens=12, do_sample=True, temperature=0.7, top_k=0, top_p=0.9,
                 num_return_sequences=3, eos_token_id=model.generation_config.eos_token_id)
    torch.manual_seed(5)
    ref = model.generate(**batch, **kw)
    torch.manual_seed(5)
    mine = decode(model, **batch, **kw, compact_fraction=2.0)
    assert torch.equal(mine, ref)
    torch.manual_seed(6)
    assert not torch.equal(decode(model, **batch, **kw, compact_fraction=2.0), ref)


def test_min_new_tokens_and_suppressed_tokens(tiny_loaded, batch):
    model, processor = tiny_loaded
    L = batch["input_ids"].shape[1]
    stop = _stop_token_that_ends_rows_at_different_steps(model, processor, batch, 16)
    kw = _common(model, processor, max_new_tokens=16, do_sample=False, eos_token_id=[stop])
    free = decode(model, **batch, **kw)[:, L:]
    first_stop = min(int((row == stop).nonzero()[0]) for row in free if (row == stop).any())
    held = decode(model, **batch, **kw, min_new_tokens=first_stop + 2)[:, L:]
    assert not (held[:, :first_stop + 2] == stop).any()
    ref = model.generate(**batch, **kw, min_new_tokens=first_stop + 2)[:, L:]
    assert torch.equal(held, ref)
    banned = sorted(set(free[0, :4].tolist()))
    out = decode(model, **batch, **kw, suppress_tokens=banned)[:, L:]
    assert not torch.isin(out, torch.tensor(banned)).any()


def test_filter_equals_transformers_warpers():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 300, generator=g) * 3
    for temperature, top_k, top_p in [(0.6, 20, 0.95), (1.0, 0, 1.0), (1.3, 0, 0.5), (0.9, 5, 1.0), (1.0, 1, 0.9)]:
        ref = scores.clone()
        if temperature != 1.0:
            ref = TemperatureLogitsWarper(temperature)(None, ref)
        if top_k:
            ref = TopKLogitsWarper(top_k=top_k)(None, ref)
        if top_p < 1.0:
            ref = TopPLogitsWarper(top_p=top_p)(None, ref)
        mine = filter_logits(scores, temperature, top_k, top_p)
        assert torch.equal(torch.isinf(mine), torch.isinf(ref)), (temperature, top_k, top_p)
        assert torch.allclose(mine[~torch.isinf(mine)], ref[~torch.isinf(ref)])


def test_unknown_models_use_generate(tiny_loaded, batch, monkeypatch):
    model, processor = tiny_loaded
    seen = {}

    def fake_generate(**kwargs):
        seen.update(kwargs)
        return kwargs["input_ids"]

    monkeypatch.setattr(model.config, "model_type", "llama")
    monkeypatch.setattr(model, "generate", fake_generate)
    assert not supports_fast_decode(model)
    decode(model, **batch, **_common(model, processor, max_new_tokens=3, do_sample=False, eos_token_id=[0]))
    assert seen["max_new_tokens"] == 3 and seen["do_sample"] is False


def test_candidates_give_the_filtered_distribution():
    g = torch.Generator().manual_seed(1)
    plain = torch.randn(9, 300, generator=g) * 2
    tied = plain.clone()
    tied[3, :40] = 10.0  # 40 tokens tie at the top: transformers keeps all of them, so the full vocabulary is used
    for temperature, top_k, top_p in [(0.6, 20, 0.95), (1.0, 20, 1.0), (1.3, 5, 0.5), (0.9, 1, 0.9), (1.0, 0, 0.9)]:
        for scores, fast in ((plain, top_k > 0), (tied, False)):
            ref = filter_logits(scores, temperature, top_k, top_p).softmax(-1)
            probs, ids = candidates(scores, temperature, top_k, top_p)
            assert (ids is not None) == fast
            full = probs if ids is None else torch.zeros_like(ref).scatter(1, ids, probs)
            assert torch.allclose(full, ref, atol=1e-6), (temperature, top_k, top_p)
