"""Prompt sharing for GRPO's log-prob passes (paper §2.2 steps 4-5): each prompt computed once per group.

The G sequences of a group start with the same prompt (its processor encoding with its images, plus
any assistant prefix of a hybrid arm, paper §3.1). The per-sequence path (``losses.token_logprobs``)
runs the whole ``prompt + completion`` of every sequence; ``shared_token_logprobs`` gives the same
per-token log-probs (and entropies, and gradients) with two forwards per micro-batch:

1. the distinct prompts of the micro-batch, left-padded, with their images, once each
   (``use_cache``); their logits give the log-probs of the trained prompt tokens (a hybrid arm's
   prefix) and of each sequence's first completion token;
2. the completions, right-padded, on the prompts' key/value cache expanded to the sequences
   (``Cache.batch_select_indices``, differentiable, so the update's gradient flows back into the
   prompt forward).

Positions are the ones the per-sequence forward uses, cut out of it: Qwen2.5-VL's 3-D M-RoPE
positions from ``get_rope_index`` over the per-sequence layout (the image tokens' positions, and the
text's offset after them, ``rope_deltas``) when the batch has images and ``mm_token_type_ids``, else
the column index of the left-padded per-sequence batch (what the model takes when it is given no
positions). So the two paths differ only by float rounding (tests/test_grpo_shared.py: 1e-5 in log-
probs and loss, 1e-4 in gradients, in float32). Setting: ``grpo.share_prompt`` (default true;
docs/grpo.md §1). No deviation from the objective.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import Tensor

from synergy.train.losses import _images_per_row, empty_batch_anchor, entropy_from_logits, token_logprobs


def prompt_groups(ro, idx: Sequence[int]) -> tuple[list[int], list[int]]:
    """Per sequence ``idx[k]`` of ``ro``: its group (0.. in order of first appearance) and its prompt length.

    The prompt is everything before the RL completion (``completion_mask``); sequences share a group
    when they come from the same prompt variant (``Rollouts.seq_variant``) with the same prompt
    length, or, for ``Rollouts`` built without ``seq_variant``, when their prompt tokens and images
    are equal.
    """
    idx = list(idx)
    total = ro.attention_mask[idx].sum(1).tolist()
    comp = ro.completion_mask[idx].sum(1).tolist()
    plen = [int(t - c) for t, c in zip(total, comp)]
    L = ro.input_ids.shape[1]
    variant = getattr(ro, "seq_variant", None)
    keys: dict = {}
    groups = []
    for k, n in enumerate(idx):
        if variant is not None:
            key = (variant[n], plen[k])
        else:
            s = L - int(total[k])
            key = (tuple(ro.input_ids[n, s: s + plen[k]].tolist()), _image_key(ro, n))
        groups.append(keys.setdefault(key, len(keys)))
    return groups, plen


def _image_key(ro, n: int):
    """The bytes of sequence n's images (None without images)."""
    mk = ro.model_kwargs
    if mk.get("image_grid_thw") is None:
        return None
    a, b = _image_range(mk["images_per_row"], n)
    if a == b:
        return None
    patch = [0] + mk["image_grid_thw"].prod(-1).cumsum(0).tolist()
    return (mk["image_grid_thw"][a:b].numpy().tobytes(), mk["pixel_values"][patch[a]: patch[b]].numpy().tobytes())


def _image_range(per_row: Sequence[int], n: int) -> tuple[int, int]:
    a = sum(int(c) for c in per_row[:n])
    return a, a + int(per_row[n])


def _base(model):
    """The Hugging Face model under DDP/DeepSpeed wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def full_positions(model, input_ids: Tensor, attention_mask: Tensor, model_kwargs: dict) -> Tensor:
    """The positions the per-sequence forward uses: ``[3, B, L]`` M-RoPE with images, else ``[B, L]`` columns."""
    base = _base(model)
    rope = getattr(getattr(base, "model", None), "get_rope_index", None)
    if rope is not None and model_kwargs.get("image_grid_thw") is not None \
            and model_kwargs.get("mm_token_type_ids") is not None:
        pos, _ = rope(input_ids, mm_token_type_ids=model_kwargs["mm_token_type_ids"],
                      image_grid_thw=model_kwargs["image_grid_thw"], attention_mask=attention_mask)
        return pos
    B, L = input_ids.shape
    return torch.arange(L, device=input_ids.device).expand(B, L)


def shared_token_logprobs(model, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor, *,
                          groups: Sequence[int], prompt_lens: Sequence[int], model_kwargs: dict | None = None,
                          with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """``losses.token_logprobs`` of a left-padded batch whose rows share prompts, each prompt run once.

    ``groups[b]`` names row b's prompt (rows of one group have equal first ``prompt_lens[b]`` tokens
    and equal images); ``completion_mask`` may mark prompt tokens too (a hybrid arm's prefix).
    Returns ``logp`` (and the entropies with ``with_entropy``) ``[B, L]``, 0 where the mask is 0.
    """
    kw = dict(model_kwargs or {})
    per_row = kw.pop("images_per_row", None)
    B, L = input_ids.shape
    device = input_ids.device
    mask = completion_mask.to(device).bool()
    if mask[:, 0].any():
        raise ValueError("completion_mask[:, 0] is set: the first token has no prediction")
    if len(groups) != B or len(prompt_lens) != B:
        raise ValueError(f"groups ({len(groups)}) and prompt_lens ({len(prompt_lens)}) must have one entry per row ({B})")
    logp_out = torch.zeros(B, L, dtype=torch.float32, device=device)
    ent_out = torch.zeros(B, L, dtype=torch.float32, device=device) if with_entropy else None
    if not mask.any():
        return logp_out + empty_batch_anchor(model, input_ids, attention_mask, kw), ent_out
    total = attention_mask.sum(1).tolist()
    start = [L - int(t) for t in total]                      # first real column of each row
    comp = [int(t) - int(p) for t, p in zip(total, prompt_lens)]  # completion length of each row
    group_t = torch.tensor(list(groups), dtype=torch.long, device=device)
    U = int(group_t.max()) + 1
    rep = [list(groups).index(u) for u in range(U)]
    for b in range(B):
        r = rep[groups[b]]
        if prompt_lens[b] != prompt_lens[r] or comp[b] < 0 or prompt_lens[b] < 1:
            raise ValueError(f"row {b}: prompt length {prompt_lens[b]} does not fit its group or its {total[b]} tokens")
    pos = full_positions(model, input_ids, attention_mask, kw)
    lead = pos.shape[:-2]  # () or (3,)

    # 1. the distinct prompts, left-padded, with their images
    Pm = max(prompt_lens[r] for r in rep)
    p_ids = input_ids.new_full((U, Pm), int(input_ids[rep[0], start[rep[0]]]))
    p_am = attention_mask.new_zeros(U, Pm)
    p_pos = pos.new_zeros(*lead, U, Pm)
    for u, r in enumerate(rep):
        s, lp = start[r], prompt_lens[r]
        p_ids[u, Pm - lp:] = input_ids[r, s: s + lp]
        p_am[u, Pm - lp:] = 1
        p_pos[..., u, Pm - lp:] = pos[..., r, s: s + lp]
    p_kw = {}
    if kw.get("image_grid_thw") is not None:
        per_row = per_row if per_row is not None else _images_per_row(_base(model), input_ids)
        p_kw = _rep_images(kw, per_row, rep)

    # what the prompt logits must predict: trained prompt tokens, and every row's first completion token
    prompt_rows, prompt_cols, targets, out_rows, out_cols = [], [], [], [], []
    for b in range(B):
        u, s, lp = groups[b], start[b], prompt_lens[b]
        for t in range(1, lp + (1 if comp[b] else 0)):
            if mask[b, s + t]:
                prompt_rows.append(u)
                prompt_cols.append(Pm - lp + t - 1)
                targets.append(s + t)
                out_rows.append(b)
    values, ents = [], []
    accepts_keep = "logits_to_keep" in inspect.signature(_base(model).forward).parameters
    first = min(prompt_cols) if prompt_cols else Pm - 1
    keep = Pm - first
    extra = {"logits_to_keep": keep} if accepts_keep else {}
    out = model(input_ids=p_ids, attention_mask=p_am, position_ids=p_pos, use_cache=True, **extra, **p_kw)
    p_logits = out.logits[:, -keep:]
    cache = out.past_key_values
    if prompt_rows:
        pairs = sorted(set(zip(prompt_rows, prompt_cols)))
        where = {pc: i for i, pc in enumerate(pairs)}
        picked = p_logits[torch.tensor([p[0] for p in pairs], device=device),
                          torch.tensor([p[1] - first for p in pairs], device=device)].float()
        lsm = picked.log_softmax(-1)
        pick = torch.tensor([where[pc] for pc in zip(prompt_rows, prompt_cols)], device=device)
        tok = input_ids[torch.tensor(out_rows, device=device), torch.tensor(targets, device=device)]
        values.append(lsm[pick].gather(-1, tok.unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            ents.append(entropy_from_logits(picked)[pick])
        out_cols.extend(targets)

    # 2. the completions (all but their last token) on the prompts' cache expanded to the rows
    Cf = max(comp) - 1
    cont = [[k for k in range(comp[b] - 1) if mask[b, L - comp[b] + k + 1]] for b in range(B)]
    if Cf > 0 and any(cont):
        c_ids = input_ids.new_full((B, Cf), int(p_ids[0, -1]))
        c_am = attention_mask.new_zeros(B, Cf)
        c_pos = pos.new_zeros(*lead, B, Cf)
        for b in range(B):
            n = comp[b] - 1
            if n > 0:
                c_ids[b, :n] = input_ids[b, L - comp[b]: L - 1]
                c_am[b, :n] = 1
                c_pos[..., b, :n] = pos[..., b, L - comp[b]: L - 1]
        cache.batch_select_indices(group_t)
        out2 = model(input_ids=c_ids, attention_mask=torch.cat([p_am[group_t], c_am], 1), position_ids=c_pos,
                     past_key_values=cache, use_cache=True)
        rows = [b for b in range(B) for _ in cont[b]]
        ks = [k for b in range(B) for k in cont[b]]
        r_t, k_t = torch.tensor(rows, device=device), torch.tensor(ks, device=device)
        picked = out2.logits[r_t, k_t].float()
        cols = [L - comp[b] + k + 1 for b, k in zip(rows, ks)]
        tok = input_ids[r_t, torch.tensor(cols, device=device)]
        values.append(picked.log_softmax(-1).gather(-1, tok.unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            ents.append(entropy_from_logits(picked))
        out_rows.extend(rows)
        out_cols.extend(cols)
    del cache
    index = (torch.tensor(out_rows, device=device), torch.tensor(out_cols, device=device))
    logp_out = logp_out.index_put(index, torch.cat(values))
    if with_entropy:
        ent_out = ent_out.index_put(index, torch.cat(ents))
    return logp_out, ent_out


def _rep_images(kw: dict, per_row, rep: list[int]) -> dict:
    """The images of the representative rows, in their order (``pixel_values``, ``image_grid_thw``)."""
    grid = kw["image_grid_thw"]
    patch = [0] + grid.prod(-1).cumsum(0).tolist()
    images = [k for r in rep for k in range(*_image_range(per_row, r))]
    if not images:
        return {}
    return {"image_grid_thw": grid[torch.tensor(images, device=grid.device)],
            "pixel_values": torch.cat([kw["pixel_values"][patch[k]: patch[k + 1]] for k in images])}


def micro_logprobs(model, ro, idx: Sequence[int], input_ids: Tensor, attention_mask: Tensor, mask: Tensor,
                   model_kwargs: dict, *, share: bool, with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs of micro-batch ``idx`` of ``ro`` (as ``select`` cut it): shared prompts when ``share`` and
    two of its rows share one, else the per-sequence ``token_logprobs``. With gradient checkpointing
    (``grpo.gradient_checkpointing``) the per-sequence path is taken in every pass (transformers drops
    the key/value cache the shared path needs while checkpointing; one path keeps ratio 1 exact)."""
    module = getattr(model, "module", model)  # a DeepSpeed engine holds the model as .module
    checkpointing = getattr(module, "is_activation_checkpointing", None)  # transformers 5.23's name
    if checkpointing is None:
        checkpointing = getattr(module, "is_gradient_checkpointing", False)
    if share and not checkpointing:
        groups, plen = prompt_groups(ro, idx)
        if max(groups) + 1 < len(groups):
            return shared_token_logprobs(model, input_ids, attention_mask, mask, groups=groups, prompt_lens=plen,
                                         model_kwargs=model_kwargs, with_entropy=with_entropy)
    return token_logprobs(model, input_ids, attention_mask, mask, model_kwargs=model_kwargs, with_entropy=with_entropy)
