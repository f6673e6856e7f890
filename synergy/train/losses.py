"""GRPO and SFT losses as pure tensor functions (paper §2.1, §2.2, §3.1), with verl's definitions.

The paper trains GRPO with verl; the definitions below follow ``verl/trainer/ppo/core_algos.py``
(docs/ecosystem.md §2):

* **Advantages** (``compute_grpo_outcome_advantage``): per group of G rollouts of one prompt,
  ``A = (r - mean) / (std + 1e-6)`` with ``torch.std`` (unbiased, N - 1), broadcast over the
  response tokens. A singleton group (G == 1) has no spread: verl then uses mean 0 and std 1, so
  ``A = r / (1 + 1e-6)`` (not 0).
* **KL** (``kl_penalty(..., "low_var_kl")``, Schulman's k3): ``d = clamp(ref - logp, -20, 20)``,
  ``k3 = exp(d) - d - 1``, clamped to ``[-10, 10]``; per token, added to the loss as ``β·k3``.
* **Policy loss** (``compute_policy_loss_vanilla``): ``ratio = exp(clamp(logp - old, -20, 20))``,
  ``max(-A·ratio, -A·clip(ratio, 1-ε_low, 1+ε_high))``, then for ``A < 0`` the dual clip
  ``min(·, -A·c)`` with ``c = clip_ratio_c = 3``. A token counts as clipped when the clipped
  term is the larger one (verl's ``pg_clipfrac``).
* **Aggregation** (``agg_loss(..., "token-mean")``): sum of per-token losses over the active
  tokens of the mini-batch divided by their number — long responses weigh more than short ones;
  it is not a mean of per-sequence means.

The SFT loss of §2.1 is the token-weighted NLL (token mean of ``-log p`` over the label tokens,
like LLaMA-Factory and ``synergy.train.sft.sft_loss``). The hybrid strategies of §3.1 put SFT
tokens into the RL mini-batch: *interleaved* adds the demonstration of a zero-pass question as an
extra row, *progressive* (prefix fading) trains a demonstration prefix with SFT weight 0.2 and the
on-policy continuation with GRPO. ``grpo_loss`` takes a disjoint ``sft_mask`` with a per-token
weight for that (see its docstring for how such a mixed batch is averaged).

Deviations from verl (numerical only):

* advantages are computed in float64 and cast back: in float32 a group of identical rewards such
  as eight 0.9s has ``r - mean ≈ -6e-8`` and ``std ≈ 6e-8``, so verl's float32 arithmetic gives
  every rollout ``A ≈ -0.056`` instead of 0; in float64 such groups give exactly 0;
* ``token_mean`` divides by ``max(count, 1)`` (verl: ``count + 1e-8``): identical for any
  non-empty mask, and 0 (not NaN-prone) for an empty one.

Everything here is a function of tensors except ``token_logprobs``, which runs a causal VLM.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "GRPOLossOutput",
    "entropy_from_logits",
    "group_advantages",
    "grpo_loss",
    "kl_k3",
    "policy_loss",
    "sft_nll",
    "token_logprobs",
    "token_mean",
]

PIXEL_KEYS = ("pixel_values", "image_grid_thw")


# ----------------------------------------------------------------------------------------------
# GRPO pieces


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantages, one per rollout: ``(r - mean) / (std + eps)`` within each group.

    ``rewards`` is ``[num_groups, G]`` (row = the G rollouts of one prompt); the result has the
    same shape and dtype. ``std`` is unbiased (``torch.std``), as in verl. A group whose rewards
    are all equal gets all-zero advantages. Singleton groups (``G == 1``) follow verl: mean 0 and
    std 1, so the advantage is ``r / (1 + eps)``. Computed in float64 (see the module docstring).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    r = rewards.detach().to(torch.float64)
    if r.shape[1] == 1:
        mean = torch.zeros_like(r)
        std = torch.ones_like(r)
    else:
        mean = r.mean(dim=1, keepdim=True)
        std = r.std(dim=1, keepdim=True)  # unbiased
    out = (r - mean) / (std + eps)
    return out.to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def kl_k3(logp: Tensor, ref_logp: Tensor, log_ratio_clamp: float = 20.0, kl_clamp: float = 10.0) -> Tensor:
    """Per-token k3 ("low_var_kl") estimate of KL(π_θ || π_ref) from sampled-token log-probs.

    ``d = clamp(ref_logp - logp, ±log_ratio_clamp)``; ``k3 = exp(d) - d - 1`` clamped to
    ``[-kl_clamp, kl_clamp]``. Non-negative; 0 where the two log-probs agree.
    """
    d = torch.clamp(ref_logp - logp, min=-log_ratio_clamp, max=log_ratio_clamp)
    return torch.clamp(torch.exp(d) - d - 1, min=-kl_clamp, max=kl_clamp)


def _broadcast_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    if advantages.dim() == like.dim() - 1 and advantages.dim() >= 1:
        advantages = advantages.unsqueeze(-1)
    return advantages.to(like.dtype)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
) -> tuple[Tensor, Tensor]:
    """Per-token clipped PPO/GRPO loss (verl "vanilla") and a per-token "was clipped" flag.

    ``ratio = exp(clamp(logp - old_logp, -20, 20))``; ``pg1 = -A·ratio``,
    ``pg2 = -A·clip(ratio, 1 - clip_low, 1 + clip_high)``; loss ``max(pg1, pg2)`` (pessimistic).
    With ``clip_ratio_c`` (dual clip, must be > 1) tokens with ``A < 0`` are capped at
    ``-A·clip_ratio_c``. The flag is ``pg2 > pg1`` (verl's ``pg_clipfrac``; the dual-clip cap
    is not counted in it). ``advantages`` is per token (same shape as ``logp``) or per sequence
    (``[B]``, broadcast over ``[B, T]``). Nothing is masked here.
    """
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (dual clip), got {clip_ratio_c}")
    adv = _broadcast_advantages(advantages, logp)
    ratio = torch.exp(torch.clamp(logp - old_logp, min=-20.0, max=20.0))
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(pg1, pg2)
    if clip_ratio_c is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * clip_ratio_c), loss)
    return loss, pg2 > pg1


def token_mean(x: Tensor, mask: Tensor, weights: Tensor | float | None = None) -> Tensor:
    """``sum(x · weights · mask) / sum(mask)``: a mean over all masked tokens of the batch.

    ``weights`` scale the summands only, not the denominator (a 0.2-weighted token counts as one
    token contributing 0.2·x). An empty mask gives 0 (a differentiable 0 when ``x`` requires grad).
    """
    m = mask.to(x.dtype)
    if weights is not None:
        x = x * weights
    # torch.where, not x * m: a non-finite value at a masked-out position must not leak (inf·0 = nan)
    total = torch.where(m != 0, x * m, torch.zeros_like(x)).sum()
    return total / m.sum().clamp(min=1.0)


def sft_nll(logp: Tensor, mask: Tensor, weights: Tensor | float | None = None) -> Tensor:
    """Token-weighted SFT loss: the token mean of ``-logp`` over ``mask`` (not a mean of sequence means)."""
    return token_mean(-logp, mask, weights)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-position entropy of ``softmax(logits)`` over the last axis, in float32 (logsumexp form)."""
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1)
    p = torch.softmax(logits, dim=-1)
    return logz - (p * logits).sum(dim=-1)


@dataclass
class GRPOLossOutput:
    """``loss`` is what to backpropagate; the other tensors are detached metrics.

    ``policy_loss``, ``kl`` and ``clip_fraction`` are token means over the RL tokens (``kl`` is 0
    when no ``ref_logp`` was given), ``sft_loss`` is the unweighted NLL token mean over the SFT
    tokens, ``num_tokens`` the number of active (RL or SFT) tokens.
    """

    loss: Tensor
    policy_loss: Tensor
    kl: Tensor
    sft_loss: Tensor
    clip_fraction: Tensor
    num_tokens: int


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    rl_mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
    kl_coef: float = 0.0,
    sft_mask: Tensor | None = None,
    sft_weight: float | Tensor = 1.0,
    normalizer: float | None = None,
) -> GRPOLossOutput:
    """The GRPO objective of §2.2 on a mini-batch, optionally mixed with SFT tokens (§3.1).

    All tensors are ``[B, T]`` per-token values aligned with each other (``advantages`` may be
    ``[B]``). Per-token loss:

    * RL tokens (``rl_mask``): ``policy_loss(...) + kl_coef · kl_k3(logp, ref_logp)``; the KL
      term needs ``ref_logp`` and is skipped when ``kl_coef == 0`` (``ref_logp`` is then ignored
      except for the ``kl`` metric);
    * SFT tokens (``sft_mask``; e.g. an external demonstration row, or the demonstration prefix of
      a prefix-guided rollout): ``sft_weight · (-logp)``; ``sft_weight`` is a float or per-token
      tensor. ``old_logp``/``advantages`` are not used on these tokens.

    Aggregation — verl's token-mean over *all* active tokens of the mini-batch, RL and SFT alike:
    ``loss = (Σ_rl ℓ_pg+kl + Σ_sft w·(-logp)) / (#rl + #sft)``. An SFT token therefore counts as
    one token in the denominator with weight ``w`` in the numerator, so adding a demonstration to
    a batch dilutes the RL tokens' per-token weight exactly as an extra rollout would (it is not a
    separately-normalized ``rl_mean + w·sft_mean``). With gradient accumulation pass
    ``normalizer`` = the active-token count of the whole mini-batch, so that summing the
    micro-batch losses gives the mini-batch token mean. Raises ``ValueError`` if the masks overlap.
    """
    rl = rl_mask.bool()
    sft = sft_mask.bool() if sft_mask is not None else torch.zeros_like(rl)
    if (rl & sft).any():
        raise ValueError("rl_mask and sft_mask overlap: a token is either RL or SFT")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError("kl_coef != 0 needs ref_logp")
    active = rl | sft
    n_active = int(active.sum())
    denom = float(normalizer) if normalizer is not None else float(max(n_active, 1))

    pg, clipped = policy_loss(logp, old_logp, advantages, clip_low, clip_high, clip_ratio_c)
    per_token_rl = pg
    kl = None
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp)
        if kl_coef != 0.0:
            per_token_rl = per_token_rl + kl_coef * kl
    per_token_sft = -logp * sft_weight
    zero = torch.zeros_like(logp)
    per_token = torch.where(rl, per_token_rl, torch.where(sft, per_token_sft, zero))
    loss = per_token.sum() / denom

    with torch.no_grad():
        metrics = dict(
            policy_loss=token_mean(pg.detach(), rl),
            kl=token_mean(kl.detach(), rl) if kl is not None else logp.new_zeros(()),
            sft_loss=token_mean(-logp.detach(), sft),
            clip_fraction=token_mean(clipped.to(logp.dtype), rl),
        )
    return GRPOLossOutput(loss=loss, num_tokens=n_active, **metrics)


# ----------------------------------------------------------------------------------------------
# Log-probs from a model


def _images_per_row(model, input_ids: Tensor) -> list[int]:
    cfg = model.config
    vs = getattr(cfg, "vision_start_token_id", None)
    if vs is None:
        vs = getattr(getattr(cfg, "text_config", None), "vision_start_token_id", None)
    if vs is None:
        raise ValueError("cannot infer images_per_row (no vision_start_token_id in the config); pass it")
    return (input_ids == vs).sum(dim=1).tolist()


def _slice_rows(
    kwargs: Mapping, lo: int, hi: int, batch_size: int, image_offsets: list[int], patch_offsets: list[int] | None
) -> dict:
    """model_kwargs for rows lo:hi: images of those rows, other [B, ...] tensors by row."""
    out = {}
    for k, v in kwargs.items():
        if k in PIXEL_KEYS:
            continue
        if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch_size:
            out[k] = v[lo:hi]
        else:
            out[k] = v
    if "image_grid_thw" in kwargs and kwargs["image_grid_thw"] is not None:
        i0, i1 = image_offsets[lo], image_offsets[hi]
        if i1 > i0:
            out["image_grid_thw"] = kwargs["image_grid_thw"][i0:i1]
            out["pixel_values"] = kwargs["pixel_values"][patch_offsets[i0] : patch_offsets[i1]]
    return out


def empty_batch_anchor(model, input_ids: Tensor, attention_mask: Tensor, model_kwargs: dict) -> Tensor | float:
    """0 with a gradient path through one forward of the batch, when gradients are on and the model trains.

    A micro-batch with no token to score still runs the model while training: a loss without a gradient path
    is refused by DeepSpeed's backward ("loss must be a scalar tensor"), and under ZeRO-3 every process must
    run the same forwards, or the others wait on parameter gathers that never come (a GRPO micro-batch whose
    rows all have an empty mask, seen in the paper-study rehearsal: docs/paper-study.md). Returns 0.0 (no
    forward) under ``torch.no_grad()`` or for a frozen model."""
    if not torch.is_grad_enabled() or not any(p.requires_grad for p in model.parameters()):
        return 0.0
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra, **model_kwargs)
    return 0.0 * out.logits.float().sum()


def token_logprobs(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    model_kwargs: dict | None = None,
    with_entropy: bool = False,
    micro_batch_size: int | None = None,
    images_per_row: list[int] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs (and optionally entropies) of the completion tokens under a causal (V)LM.

    Returns ``logp`` of shape ``[B, L]`` aligned with ``input_ids``: position t holds
    ``log p(input_ids[t] | input_ids[<t])`` (logits at t-1 predict token t) where
    ``completion_mask[t]`` is 1, and 0 elsewhere. With ``with_entropy`` also the entropy of that
    predictive distribution at the same positions (0 elsewhere), else ``None``. log_softmax and
    entropy are computed in float32, only at completion positions; gradients flow to the model
    unless called under ``torch.no_grad()``. Position 0 cannot be a completion token.

    ``model_kwargs`` (e.g. ``pixel_values``, ``image_grid_thw``) is passed to the forward. For
    ``micro_batch_size`` the rows are run in chunks: images belong to rows in row order and image
    k owns ``pixel_values`` rows ``cumsum(image_grid_thw.prod(-1))[k-1]:cumsum[k]``, so each
    chunk gets its rows' images; ``images_per_row`` (also accepted as a ``model_kwargs`` key)
    says how many images each row has, and defaults to counting ``<|vision_start|>`` tokens.
    Other tensors in ``model_kwargs`` whose first dimension is B are sliced by row.
    """
    kwargs = dict(model_kwargs or {})
    if "images_per_row" in kwargs:
        ipr = kwargs.pop("images_per_row")
        images_per_row = images_per_row if images_per_row is not None else ipr
    B, L = input_ids.shape
    device = input_ids.device
    cmask = completion_mask.to(device).bool()
    if cmask[:, 0].any():
        raise ValueError("completion_mask[:, 0] is set: the first token has no prediction")
    logp_out = torch.zeros(B, L, dtype=torch.float32, device=device)
    ent_out = torch.zeros(B, L, dtype=torch.float32, device=device) if with_entropy else None
    if not cmask.any():
        return logp_out + empty_batch_anchor(model, input_ids, attention_mask, kwargs), ent_out

    mbs = micro_batch_size or B
    has_images = kwargs.get("image_grid_thw") is not None
    image_offsets = [0] * (B + 1)
    patch_offsets = None
    if has_images and mbs < B:
        grid = kwargs["image_grid_thw"]
        if images_per_row is None:
            images_per_row = _images_per_row(model, input_ids)
        if len(images_per_row) != B or sum(images_per_row) != grid.shape[0]:
            raise ValueError(f"images_per_row {images_per_row} does not match {grid.shape[0]} images in {B} rows")
        for i, n in enumerate(images_per_row):
            image_offsets[i + 1] = image_offsets[i] + int(n)
        patch_offsets = [0] + grid.prod(-1).cumsum(0).tolist()
        if patch_offsets[-1] != kwargs["pixel_values"].shape[0]:
            raise ValueError("pixel_values rows do not match image_grid_thw")

    accepts_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    rows_logp, rows_ent = [], []
    for lo in range(0, B, mbs):
        hi = min(lo + mbs, B)
        mb_kwargs = kwargs if (lo == 0 and hi == B) else _slice_rows(kwargs, lo, hi, B, image_offsets, patch_offsets)
        mb_mask = cmask[lo:hi]
        cols = mb_mask.any(dim=0).nonzero()
        if cols.numel() == 0:
            continue
        first = int(cols[0])  # earliest completion position in this chunk (>= 1)
        keep = L - first + 1  # logits at positions first-1 .. L-1
        extra = {"logits_to_keep": keep} if accepts_keep else {}
        out = model(
            input_ids=input_ids[lo:hi], attention_mask=attention_mask[lo:hi], use_cache=False, **extra, **mb_kwargs
        )
        logits = out.logits[:, -keep:]  # a no-op when the model honoured logits_to_keep
        logits = logits[:, :-1]  # predicts input_ids[:, first:]
        targets = input_ids[lo:hi, first:]
        sel = mb_mask[:, first:]
        picked = logits[sel].float()  # [n, V]: only completion positions, in float32
        tok = targets[sel]
        lp = picked.log_softmax(-1).gather(-1, tok.unsqueeze(-1)).squeeze(-1)
        block = torch.zeros(hi - lo, L, dtype=torch.float32, device=device)
        idx = sel.nonzero(as_tuple=True)
        block = block.index_put((idx[0], idx[1] + first), lp)
        rows_logp.append((lo, hi, block))
        if with_entropy:
            e = entropy_from_logits(picked)
            eb = torch.zeros(hi - lo, L, dtype=torch.float32, device=device).index_put((idx[0], idx[1] + first), e)
            rows_ent.append((lo, hi, eb))

    # assemble without in-place writes into a leaf, so gradients flow through every chunk
    def _assemble(parts, base):
        pieces, cursor = [], 0
        for lo, hi, block in parts:
            if lo > cursor:
                pieces.append(base[cursor:lo])
            pieces.append(block)
            cursor = hi
        if cursor < B:
            pieces.append(base[cursor:])
        return torch.cat(pieces, dim=0)

    logp_out = _assemble(rows_logp, logp_out)
    if with_entropy:
        ent_out = _assemble(rows_ent, ent_out)
    return logp_out, ent_out
