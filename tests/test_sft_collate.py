"""synergy.train.sft: assistant-only labels and the SFT loss."""

from __future__ import annotations

import math

import pytest
import torch

from synergy.train.sft import IGNORE_INDEX, collate_sft, row_nll, sft_loss
from synergy.prompts import Prompt


def _prompt(text: str, images=()) -> Prompt:
    content = [{"type": "text", "text": text}] + [{"type": "image"} for _ in images]
    return Prompt([{"role": "user", "content": content}], list(images))


@pytest.fixture
def sft_rows(test_images):
    prompts = [
        _prompt("How many red squares are there?", test_images[:1]),
        _prompt("What is 3 + 4?"),
        _prompt("How many squares in the two images?", test_images),
    ]
    responses = [
        "<think> I see 1 red square. </think> \\boxed{1}",
        "The answer is 7.",
        "<think> 1 + 1 = 2 </think> \\boxed{2}",
    ]
    return prompts, responses


def test_labels_are_exactly_response_plus_im_end(tiny_loaded, sft_rows):
    _, processor = tiny_loaded
    prompts, responses = sft_rows
    batch = collate_sft(processor, prompts, responses)
    tok = processor.tokenizer
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == attn.shape
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    specials = {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>")}
    for i, resp in enumerate(responses):
        expected = tok(resp + "<|im_end|>", add_special_tokens=False)["input_ids"]
        mask = labels[i] != IGNORE_INDEX
        got = labels[i][mask].tolist()
        assert got == expected  # the response tokens, then <|im_end|>
        assert got[-1] == im_end
        assert torch.equal(labels[i][mask], ids[i][mask])
        # the labelled span is the contiguous end of the row (left padding)
        n = int(mask.sum())
        assert mask[-n:].all() and not mask[:-n].any()
        assert tok.decode(got, skip_special_tokens=True) == resp
        # padding, image and prompt tokens are all masked
        assert (labels[i][attn[i] == 0] == IGNORE_INDEX).all()
        assert not (set(labels[i][mask].tolist()) & specials)
    assert (attn == 0).any()  # rows have different lengths: padding present


def test_image_tensors_and_mixed_rows(tiny_loaded, sft_rows):
    _, processor = tiny_loaded
    prompts, responses = sft_rows
    batch = collate_sft(processor, prompts, responses)
    # 3 images at 56 px: grid (1, 4, 4) each = 16 patch rows of 1176 values
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 3
    assert batch["pixel_values"].shape == (48, 1176)
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert [(row == pad).sum().item() for row in batch["input_ids"]] == [4, 0, 8]

    text_only = collate_sft(processor, [prompts[1]], [responses[1]])
    assert "pixel_values" not in text_only and "image_grid_thw" not in text_only


def test_sft_loss_token_count(tiny_loaded, sft_rows):
    model, processor = tiny_loaded
    prompts, responses = sft_rows
    batch = collate_sft(processor, prompts, responses)
    loss, n = sft_loss(model, batch)
    assert n == int((batch["labels"] != IGNORE_INDEX).sum())
    assert math.isfinite(loss.item()) and loss.item() > 0
    # random model over a ~370-token vocab: NLL near log(vocab)
    assert 3.0 < loss.item() < 10.0
    # token-weighted: equals the sum of per-row NLL sums divided by the total count
    total = 0.0
    for i in range(len(prompts)):
        sub = collate_sft(processor, [prompts[i]], [responses[i]])
        li, ni = sft_loss(model, sub)
        total += li.item() * ni
    assert total / n == pytest.approx(loss.item(), rel=1e-4)


def test_row_nll_is_each_rows_summed_response_nll(tiny_loaded, sft_rows):
    model, processor = tiny_loaded
    prompts, responses = sft_rows
    with torch.no_grad():
        rows = row_nll(model, collate_sft(processor, prompts, responses))
        assert rows.shape == (len(prompts),)
        for i in range(len(prompts)):
            li, ni = sft_loss(model, collate_sft(processor, [prompts[i]], [responses[i]]))
            assert rows[i].item() == pytest.approx(li.item() * ni, rel=1e-4)


def test_loss_backward_reaches_text_params(tiny_model_dir, sft_rows):
    from synergy.models import freeze_vision, load_model

    model, processor = load_model(tiny_model_dir)
    freeze_vision(model)
    model.train()
    loss, _ = sft_loss(model, collate_sft(processor, *sft_rows))
    loss.backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if "visual" in n)


def test_too_long_raises_naming_row(tiny_loaded, sft_rows):
    _, processor = tiny_loaded
    prompts, responses = sft_rows
    responses = list(responses)
    responses[2] = "<think> " + "count again, " * 40 + "</think> \\boxed{2}"
    with pytest.raises(ValueError, match="row 2"):
        collate_sft(processor, prompts, responses, max_length=120)
    collate_sft(processor, prompts[:2], responses[:2], max_length=120)


def test_mismatched_lengths_raise(tiny_loaded, sft_rows):
    with pytest.raises(ValueError):
        collate_sft(tiny_loaded[1], sft_rows[0], sft_rows[1][:2])
