"""The log-prob batch of a GRPO step (paper §2.2 step 4): prompts and sampled ids packed into tensors.

``Rollouts`` is the step's batch as the scoring and the updates read it. ``StepSequences`` holds a
step's P x G sequences while they are sampled and routed (prompt variant, completion ids, grade,
loss kind per sequence); ``pack`` lays sequence n out as its prompt variant (the prompt's processor
encoding, plus any assistant prefix of a hybrid arm) followed by its completion ids exactly as
sampled, left-padded into one ``[N, L]`` batch with its images; ``select`` (and the public ``rollout_rows``) cut
sequences out of it as a forward batch with all-padding columns dropped. The log-prob forward gets
the same multimodal inputs the sampler got: ``mm_token_type_ids`` (Qwen2.5-VL's 3-D M-RoPE
positions) only when the processor returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from synergy.generate.hf import encode_prompts, prompt_texts
from synergy.prompts import Prompt


@dataclass
class Rollouts:
    """One step's batch: G sequences per prompt, prompt-major (sequence ``i * G + j`` is sample j of prompt i).

    ``input_ids``/``attention_mask``/``completion_mask``/``sft_weight`` are ``[N, L]``: the prompt
    (processor encoding, image placeholders expanded, plus any assistant prefix) followed by the
    completion ids exactly as generated, left-padded. ``completion_mask`` marks the tokens that get
    the RL loss (the completions, stop token included, of RL-routed groups); ``sft_weight`` is the
    SFT weight of each token (0 = no SFT loss): an external trace, or its prefix (paper §3.1).
    ``model_kwargs`` holds the per-sequence images (``pixel_values``, ``image_grid_thw`` in row
    order, ``images_per_row``) and ``mm_token_type_ids`` when the processor returns it; empty for
    text-only batches.
    ``rewards`` is ``[num_prompts, G]``: the rewards the advantages are computed from (guided
    rollouts are rewarded on prefix + continuation; SFT-routed groups have 0). ``routes`` says per
    prompt what it was trained with: ``rl``, ``sft`` (interleaved, or a progressive prefix that is
    the whole trace) or ``prefix`` (prefix-guided rollouts).
    ``sample_rewards``, ``correct``, ``format_ok``, ``truncated``, ``lengths`` (completion tokens)
    and ``texts`` describe the policy's own unguided samples of the step (all sequences for pure
    GRPO; the metrics ``reward``/``accuracy``/... are computed from them).
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    model_kwargs: dict
    rewards: Tensor
    correct: Tensor
    format_ok: Tensor
    truncated: Tensor
    lengths: Tensor
    texts: list[str] = field(default_factory=list)
    sft_weight: Tensor | None = None
    sample_rewards: Tensor | None = None
    routes: list[str] = field(default_factory=list)
    prefix_fraction: float = float("nan")
    seq_variant: list[int] | None = None  # the prompt variant of each sequence (grpo/shared.py groups by it)

    def __post_init__(self):
        if self.sft_weight is None:
            self.sft_weight = torch.zeros(self.input_ids.shape, dtype=torch.float32)
        if self.sample_rewards is None:
            self.sample_rewards = self.rewards.reshape(-1)
        if not self.routes:
            self.routes = ["rl"] * int(self.rewards.shape[0])

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def trained_mask(self) -> Tensor:
        """Tokens that get any loss (RL or SFT), ``[N, L]`` bool."""
        return self.completion_mask.bool() | (self.sft_weight > 0)


@dataclass
class StepSequences:
    """The P x G sequences of one step while they are sampled and routed; ``pack`` makes the tensors.

    Sequence ``n = i * G + j`` is sample j of prompt i. Variant ``v < P`` is prompt v itself; a
    hybrid arm adds variants of a prompt with an assistant prefix (``add_variant``). Per sequence:
    its variant, completion ids, whether a stop token ended it, text (prefix + continuation), grade,
    whether its completion gets the RL loss (``seq_rl``) and the SFT weight of its prefix
    (``seq_w``); per prompt its route (``rl``, ``sft``, ``prefix``). ``own`` collects
    ``(sequence, grade, ended, length, text)`` of the policy's own unguided samples (the metrics).
    """

    rows: list[Mapping]
    prompts: list[Prompt]
    G: int
    variants: list[Prompt] = field(default_factory=list)
    variant_prompt: dict[int, int] = field(default_factory=dict)
    seq_variant: list[int] = field(default_factory=list)
    comp: list[list[int]] = field(default_factory=list)
    ended: list[bool] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    grades: list = field(default_factory=list)
    seq_rl: list[bool] = field(default_factory=list)
    seq_w: list[float] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    sampled_ids: dict[int, list[int]] = field(default_factory=dict)  # variant -> prompt ids the sampler encoded
    own: list[tuple] = field(default_factory=list)
    stops: list[Tensor] = field(default_factory=list)  # the samplers' stop ids

    def __post_init__(self):
        P, G = len(self.prompts), self.G
        self.variants = list(self.prompts)
        self.seq_variant = [n // G for n in range(P * G)]
        self.comp = [[] for _ in range(P * G)]
        self.ended = [True] * (P * G)
        self.texts = [""] * (P * G)
        self.grades = [None] * (P * G)
        self.seq_rl = [True] * (P * G)
        self.seq_w = [0.0] * (P * G)
        self.routes = ["rl"] * P

    @property
    def P(self) -> int:
        return len(self.prompts)

    def prompt_of(self, v: int) -> int:
        """The prompt a variant belongs to."""
        return v if v < self.P else self.variant_prompt[v]

    def add_variant(self, i: int, assistant_prefix: str) -> int:
        """A new variant of prompt i whose assistant turn starts with ``assistant_prefix``; returns its index."""
        self.variants.append(Prompt(self.prompts[i].messages, self.prompts[i].images,
                                    assistant_prefix=assistant_prefix))
        v = len(self.variants) - 1
        self.variant_prompt[v] = i
        return v


def prefix_token_count(processor, prompt: Prompt) -> int:
    """How many trailing tokens of the prompt's encoding are its assistant prefix.

    Counted as the tokens after the longest common prefix of the encodings with and without the
    prefix, so a token that merges across the boundary counts as a prefix token.
    """
    if not prompt.assistant_prefix:
        return 0
    bare = Prompt(prompt.messages, prompt.images)
    a, b = processor.tokenizer(prompt_texts(processor, [bare, prompt]), add_special_tokens=False)["input_ids"]
    c = 0
    while c < min(len(a), len(b)) and a[c] == b[c]:
        c += 1
    return len(b) - c


def pack(processor, variants: Sequence[Prompt], seq_variant: Sequence[int], comp_ids: Sequence[list[int]],
         seq_rl: Sequence[bool], seq_prefix_weight: Sequence[float], stop: Tensor):
    """Sequence n = prompt variant ``seq_variant[n]`` + ``comp_ids[n]``, as one left-padded batch with its images.

    Returns (input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids):
    completion tokens of sequences with ``seq_rl`` are RL tokens; the assistant-prefix tokens of a
    sequence with ``seq_prefix_weight > 0`` get that SFT weight.
    """
    enc = encode_prompts(processor, variants)
    enc_mask = enc["attention_mask"].bool()
    V, N = len(variants), len(comp_ids)
    variant_ids = [enc["input_ids"][v][enc_mask[v]].tolist() for v in range(V)]
    n_prefix = [prefix_token_count(processor, p) for p in variants]
    pad_id = processor.tokenizer.pad_token_id
    pad_id = int(stop[0]) if pad_id is None else int(pad_id)
    L = max(len(variant_ids[seq_variant[n]]) + len(comp_ids[n]) for n in range(N))
    input_ids = torch.full((N, L), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(N, L, dtype=torch.long)
    completion_mask = torch.zeros(N, L, dtype=torch.long)
    sft_weight = torch.zeros(N, L, dtype=torch.float32)
    has_mm = "mm_token_type_ids" in enc
    mm = torch.zeros(N, L, dtype=torch.long) if has_mm else None
    for n in range(N):
        v = seq_variant[n]
        p, c = variant_ids[v], comp_ids[n]
        T = len(p) + len(c)
        input_ids[n, L - T:] = torch.tensor(p + c, dtype=torch.long)
        attention_mask[n, L - T:] = 1
        if seq_rl[n] and c:
            completion_mask[n, L - len(c):] = 1
        if seq_prefix_weight[n] > 0 and n_prefix[v]:
            sft_weight[n, L - len(c) - n_prefix[v]: L - len(c)] = float(seq_prefix_weight[n])
        if mm is not None:
            mm[n, L - T: L - len(c)] = enc["mm_token_type_ids"][v][enc_mask[v]]

    model_kwargs: dict[str, Any] = {}
    if enc.get("image_grid_thw") is not None:
        grid, pixels = enc["image_grid_thw"], enc["pixel_values"]
        img_off = [0]
        for p in variants:
            img_off.append(img_off[-1] + len(p.images))
        patch_off = [0] + grid.prod(-1).cumsum(0).tolist()
        pv, gr, per_row = [], [], []
        for n in range(N):
            a, b = img_off[seq_variant[n]], img_off[seq_variant[n] + 1]
            pv.append(pixels[patch_off[a]: patch_off[b]])
            gr.append(grid[a:b])
            per_row.append(b - a)
        model_kwargs = {"pixel_values": torch.cat(pv), "image_grid_thw": torch.cat(gr), "images_per_row": per_row}
    if mm is not None:
        model_kwargs["mm_token_type_ids"] = mm
    return input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids


def select(ro: Rollouts, idx: Sequence[int], device=None) -> tuple[Tensor, Tensor, Tensor, Tensor, dict, int]:
    """Sequences ``idx`` (ascending) of ``ro`` as a forward batch with all-padding columns dropped.

    Returns ``(input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, first_column)``.
    """
    idx = list(idx)
    sel = torch.tensor(idx, dtype=torch.long)
    am = ro.attention_mask[sel]
    c0 = int(am.any(0).nonzero()[0])
    kw: dict[str, Any] = {}
    mk = ro.model_kwargs
    if mk.get("image_grid_thw") is not None:
        per_row = mk["images_per_row"]
        img_off = [0]
        for c in per_row:
            img_off.append(img_off[-1] + c)
        patch_off = [0] + mk["image_grid_thw"].prod(-1).cumsum(0).tolist()
        images = [k for n in idx for k in range(img_off[n], img_off[n + 1])]
        if images:
            kw["image_grid_thw"] = mk["image_grid_thw"][torch.tensor(images)]
            kw["pixel_values"] = torch.cat([mk["pixel_values"][patch_off[k]: patch_off[k + 1]] for k in images])
    if mk.get("mm_token_type_ids") is not None:
        kw["mm_token_type_ids"] = mk["mm_token_type_ids"][sel, c0:]
    out = (ro.input_ids[sel, c0:], am[:, c0:], ro.completion_mask[sel, c0:], ro.sft_weight[sel, c0:])
    if device is not None:
        out = tuple(t.to(device) for t in out)
        kw = {k: v.to(device) for k, v in kw.items()}
    return (*out, kw, c0)


def rollout_rows(ro: Rollouts, lo: int, hi: int, device=None) -> tuple[Tensor, Tensor, Tensor, dict, int]:
    """Sequences ``lo:hi`` of ``ro`` as a forward batch with all-padding columns dropped.

    Returns ``(input_ids, attention_mask, completion_mask, model_kwargs, first_column)``: the
    tensors cover columns ``first_column:`` of ``ro``'s ``[N, L]`` layout; ``model_kwargs`` holds
    those rows' images (and ``mm_token_type_ids``), moved to ``device`` when given.
    """
    ids, am, cm, _, kw, c0 = select(ro, range(lo, hi), device)
    return ids, am, cm, kw, c0
