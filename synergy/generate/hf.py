"""The ``hf`` rollout backend: batched sampling with transformers models (CPU or GPU).

Prompts are sorted by (estimated) prompt length, cut into batches of at most
``max_batch_sequences`` sequences (prompts x samples), and each batch is one call of
``synergy.generate.decode.decode`` (transformers' ``generate`` contract; for Qwen2-VL / Qwen2.5-VL
its own loop that drops finished sequences, else ``model.generate``) with ``num_return_sequences``; results come back in the input order. Every call is seeded
with a seed derived from ``cfg.seed`` and the batch index, inside ``torch.random.fork_rng`` so the
caller's RNG state is untouched: the same prompts, model and config give the same completions.

Sampling is "pure": every sampling parameter is passed explicitly, which overrides whatever a
checkpoint's ``generation_config.json`` says (Qwen2.5-VL-7B-Instruct ships top_k=1, top_p=0.001,
repetition_penalty=1.05); ``repetition_penalty`` is fixed at 1. Stop tokens are the model's
``generation_config.eos_token_id`` (``<|im_end|>`` and ``<|endoftext|>`` for Qwen2.5-VL).

Every ``Completion`` carries the ids it was made of: ``token_ids`` (the sampled tokens up to and
including the stop token, exactly as generated; ``text`` is their decoding) and ``prompt_ids``
(the prompt's ids as the sampler encoded them, image placeholders expanded, padding stripped).
GRPO trains on exactly these ids (``synergy.train.grpo``); nothing is re-tokenised from text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from synergy.generate.decode import decode
from synergy.prompts import Prompt

log = logging.getLogger("synergy.generate")


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 1  # samples per prompt
    temperature: float = 1.0  # 0 = greedy (all n samples identical)
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 256
    seed: int = 0
    max_batch_sequences: int = 256  # prompts*n sequences per generate() call
    min_new_tokens: int = 0  # forbid EOS before this many tokens (benchmarks only)

    def __post_init__(self):
        if self.n < 1 or self.max_new_tokens < 1 or self.max_batch_sequences < 1:
            raise ValueError(f"n, max_new_tokens and max_batch_sequences must be >= 1: {self}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid sampling parameters: {self}")


@dataclass(frozen=True)
class Completion:
    text: str  # decoded with special tokens skipped (keeps <think> tags)
    num_tokens: int  # generated tokens up to and including EOS
    truncated: bool  # True if it hit max_new_tokens without EOS
    # the ids behind ``text`` (not compared: two completions are equal when they read the same)
    token_ids: tuple[int, ...] = field(default=(), compare=False, repr=False)  # the num_tokens generated ids
    prompt_ids: tuple[int, ...] = field(default=(), compare=False, repr=False)  # the prompt as the sampler saw it


def batch_seed(seed: int, batch_index: int) -> int:
    """The torch seed of generate call ``batch_index`` (a fixed mix of both, < 2**63)."""
    return (seed * 1_000_003 + batch_index * 7_919 + 0x5EED) % (2**63 - 1)


def prompt_texts(processor, prompts: Sequence[Prompt]) -> list[str]:
    """Chat-template each prompt with the generation prompt (``<|im_start|>assistant\\n``) and its assistant prefix."""
    return [processor.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True) + p.assistant_prefix
            for p in prompts]


def _num_image_tokens(processor, image) -> int:
    improc = processor.image_processor
    merge = getattr(improc, "merge_size", 2)
    try:
        return improc.get_number_of_image_patches(image.height, image.width) // (merge * merge)
    except Exception:  # other processors: a rough estimate is enough for sorting
        return max(1, image.height * image.width // (28 * 28))


def _estimated_lengths(processor, texts: Sequence[str], prompts: Sequence[Prompt]) -> list[int]:
    """Prompt lengths in tokens after image-token expansion (text tokenised, images counted)."""
    ids = processor.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    # each image's single <|image_pad|> placeholder becomes _num_image_tokens pads
    return [len(x) + sum(_num_image_tokens(processor, im) - 1 for im in p.images) for x, p in zip(ids, prompts)]


@contextmanager
def left_padding(processor):
    """Temporarily force left padding (decoder-only generation needs it)."""
    tok = processor.tokenizer
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        yield
    finally:
        tok.padding_side = old


def encode_prompts(processor, prompts: Sequence[Prompt], texts: Sequence[str] | None = None) -> dict:
    """Processor output for a batch of prompts (left padded); pixel keys only if a prompt has images."""
    texts = list(texts) if texts is not None else prompt_texts(processor, prompts)
    images = [im for p in prompts for im in p.images]
    with left_padding(processor):
        enc = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    return dict(enc)


def _eos_ids(model, processor) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    if not eos:
        raise ValueError("model has no eos_token_id")
    return eos


def _plan(num_prompts: int, cfg: SamplingConfig) -> list[tuple[int, int, int]]:
    """(first sorted prompt, number of prompts, samples per prompt) for each generate call."""
    per_call = 1 if cfg.temperature == 0 else min(cfg.n, cfg.max_batch_sequences)
    prompts_per_call = max(1, cfg.max_batch_sequences // per_call)
    rounds = 1 if cfg.temperature == 0 else -(-cfg.n // per_call)
    plan = []
    for start in range(0, num_prompts, prompts_per_call):
        count = min(prompts_per_call, num_prompts - start)
        left = 1 if cfg.temperature == 0 else cfg.n
        for _ in range(rounds):
            k = min(per_call, left)
            plan.append((start, count, k))
            left -= k
    return plan


@torch.no_grad()
def generate(
    model,
    processor,
    prompts: Sequence[Prompt],
    cfg: SamplingConfig,
    progress: Callable[[int, int], None] | None = None,
    *,
    suppress_tokens: Sequence[int] = (),
    synced_gpus: bool = False,
) -> list[list[Completion]]:
    """Sample ``cfg.n`` completions for every prompt; ``out[i][j]`` is sample j of prompts[i].

    ``progress(done, total)`` is called after each generate call with the number of prompts whose
    samples are all done. ``suppress_tokens`` are never sampled (added to the model's own
    ``generation_config.suppress_tokens``; GRPO suppresses the vision placeholders).
    ``synced_gpus`` (GRPO under ZeRO-3 with several processes): every process runs forwards until all
    have finished (``decode``); the callers must give every process the same number of prompts.
    """
    prompts = list(prompts)
    if not prompts:
        return []
    texts = prompt_texts(processor, prompts)
    lengths = _estimated_lengths(processor, texts, prompts)
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
    eos_ids = _eos_ids(model, processor)
    pad_id = processor.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = eos_ids[0]
    eos_t = torch.tensor(eos_ids)
    device = model.device
    greedy = cfg.temperature == 0
    sampling = (
        dict(do_sample=False)
        if greedy
        else dict(do_sample=True, temperature=float(cfg.temperature), top_p=float(cfg.top_p), top_k=int(cfg.top_k))
    )
    if suppress_tokens:
        existing = getattr(model.generation_config, "suppress_tokens", None)
        sampling["suppress_tokens"] = sorted(set(int(t) for t in suppress_tokens) | set(existing or ()))
    results: list[list[Completion]] = [[] for _ in prompts]
    plan = _plan(len(prompts), cfg)
    tokenizer = processor.tokenizer
    for b, (start, count, k) in enumerate(plan):
        idx = order[start : start + count]
        batch = [prompts[i] for i in idx]
        enc = encode_prompts(processor, batch, [texts[i] for i in idx])
        # keep mm_token_type_ids: Qwen2.5-VL builds its 3-D M-RoPE positions of image tokens from it
        enc = {key: v.to(device) if isinstance(v, torch.Tensor) else v for key, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(batch_seed(cfg.seed, b))
            out = decode(  # synergy's loop; model.generate for models it does not know
                model,
                **enc,
                **sampling,
                num_return_sequences=k,
                max_new_tokens=cfg.max_new_tokens,
                min_new_tokens=cfg.min_new_tokens or None,
                repetition_penalty=1.0,
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                return_dict_in_generate=False,
                synced_gpus=synced_gpus,
            )
        dt = time.perf_counter() - t0
        gen = out[:, prompt_len:].cpu()
        is_eos = torch.isin(gen, eos_t)
        has_eos = is_eos.any(1)
        first = torch.where(has_eos, is_eos.int().argmax(1), torch.full_like(has_eos, gen.shape[1], dtype=torch.long))
        num_tokens = torch.where(has_eos, first + 1, first).tolist()
        gen_ids = [row[:n].tolist() for row, n in zip(gen, num_tokens)]
        texts_out = tokenizer.batch_decode(gen_ids, skip_special_tokens=True)
        in_ids, in_mask = enc["input_ids"].cpu(), enc["attention_mask"].cpu().bool()
        for r, i in enumerate(idx):
            prompt_ids = tuple(in_ids[r][in_mask[r]].tolist())
            for j in range(k):
                s = r * k + j
                c = Completion(text=texts_out[s], num_tokens=num_tokens[s], truncated=not bool(has_eos[s]),
                               token_ids=tuple(gen_ids[s]), prompt_ids=prompt_ids)
                results[i].extend([c] * cfg.n if greedy else [c])
        total_tokens = sum(num_tokens)
        log.info(
            "batch %d/%d: %d sequences (%d prompts x %d), prompt len %d, %d generated tokens in %.2fs (%.0f tok/s)",
            b + 1, len(plan), gen.shape[0], count, k, prompt_len, total_tokens, dt, total_tokens / max(dt, 1e-9),
        )
        if progress is not None:
            last_round = b + 1 == len(plan) or plan[b + 1][0] != start
            done = start + count if last_round else start
            progress(done, len(prompts))
    return results
