"""Supervised fine-tuning batches with assistant-only labels (paper §2.1, long-CoT SFT).

``collate_sft`` turns (prompt, response) pairs into one processor batch: the full chat text is the
prompt rendered with the generation prompt (``...<|im_start|>assistant\\n``) followed by the
response and ``<|im_end|>``. Labels are the input ids on the response tokens and the final
``<|im_end|>`` only; system/user turns, image tokens and padding are -100.

The response span is found exactly, not by re-tokenising the response: the prompt text is
tokenised on its own, its ``<|image_pad|>`` placeholders are expanded to the number of visual
tokens of each image (``image_grid_thw.prod() // merge_size**2``), and these ids must be a prefix
of the row's ids in the processor output (an ``AssertionError`` otherwise, e.g. when a response
starting with a newline merges with the prompt's last ``\\n`` token). This works with either
padding side (the processor pads on the left).

``pixel_values`` is the processor's flat concatenation over all images of the batch, in row order
(multiple images of a row in their order); image k owns rows
``cumsum(image_grid_thw.prod(-1))[k-1] : cumsum(...)[k]``. Text-only rows simply contribute none,
and the pixel keys are omitted when no row has an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from synergy.generate.hf import prompt_texts
from synergy.prompts import Prompt

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"
# mm_token_type_ids marks image tokens: Qwen2.5-VL needs it to build its 3-D (M-RoPE) positions.
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")


def _expand_image_pads(ids: list[int], image_token_id: int, counts: list[int]) -> list[int]:
    out: list[int] = []
    k = 0
    for t in ids:
        if t == image_token_id:
            if k >= len(counts):
                raise ValueError("more <|image_pad|> placeholders than images")
            out.extend([image_token_id] * counts[k])
            k += 1
        else:
            out.append(t)
    if k != len(counts):
        raise ValueError(f"{len(counts)} images but {k} <|image_pad|> placeholders")
    return out


def collate_sft(
    processor, prompts: Sequence[Prompt], responses: Sequence[str], max_length: int | None = None
) -> dict[str, Tensor]:
    """A padded SFT batch: input_ids, attention_mask, labels (+ pixel_values, image_grid_thw).

    Raises ValueError naming the row if a sequence is longer than ``max_length`` (sequences are
    never truncated: that could cut image tokens).
    """
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("empty batch")
    tokenizer = processor.tokenizer
    ptexts = prompt_texts(processor, prompts)
    full = [p + r + END_OF_TURN for p, r in zip(ptexts, responses)]
    images = [im for p in prompts for im in p.images]
    enc = processor(text=full, images=images or None, padding=True, return_tensors="pt")

    image_token_id = tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<|image_pad|>"))
    merge = getattr(processor.image_processor, "merge_size", 2)
    per_image = (enc["image_grid_thw"].prod(-1) // (merge * merge)).tolist() if images else []
    prompt_ids = tokenizer(ptexts, add_special_tokens=False)["input_ids"]
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)

    input_ids, attn = enc["input_ids"], enc["attention_mask"]
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    first_image = 0
    for i, prompt in enumerate(prompts):
        n_img = len(prompt.images)
        expanded = _expand_image_pads(prompt_ids[i], image_token_id, per_image[first_image : first_image + n_img])
        first_image += n_img
        pos = attn[i].nonzero().squeeze(1)
        row = input_ids[i, pos]
        if max_length is not None and len(row) > max_length:
            raise ValueError(f"row {i}: {len(row)} tokens > max_length {max_length}")
        n_prompt = len(expanded)
        assert row[:n_prompt].tolist() == expanded, (
            f"row {i}: the prompt's token ids are not a prefix of the full sequence's ids "
            "(does the response start with whitespace that merges with the prompt's last token?)"
        )
        assert n_prompt < len(row) and int(row[-1]) == end_id, f"row {i}: sequence does not end with {END_OF_TURN}"
        labels[i, pos[n_prompt:]] = row[n_prompt:]

    batch = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}
    if "mm_token_type_ids" in enc:
        batch["mm_token_type_ids"] = enc["mm_token_type_ids"]
    if images:
        batch["pixel_values"] = enc["pixel_values"]
        batch["image_grid_thw"] = enc["image_grid_thw"]
    return batch


def row_nll(model, batch: dict[str, Tensor]) -> Tensor:
    """Summed token NLL of each row's label tokens (the response, teacher-forced): one value per row."""
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}
    logits = model(**inputs).logits[:, :-1].float()
    target = batch["labels"][:, 1:].to(device)
    nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="none")
    return nll.sum(1)


def sft_loss(model, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    """Mean token NLL over the label tokens (token-weighted across the batch) and their number."""
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}
    labels = batch["labels"].to(device)
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    n = int((target != IGNORE_INDEX).sum())
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    if n == 0:
        return nll * 0.0, 0
    return nll / n, n
