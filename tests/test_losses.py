"""synergy.train.losses: GRPO / SFT loss math against hand-computed numbers (verl definitions)."""

from __future__ import annotations

import math

import pytest
import torch

from synergy.prompts import Prompt
from synergy.train.losses import (
    entropy_from_logits,
    group_advantages,
    grpo_loss,
    kl_k3,
    policy_loss,
    sft_nll,
    token_logprobs,
    token_mean,
)
from synergy.train.sft import IGNORE_INDEX, collate_sft, sft_loss

F64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=F64)


# ----------------------------------------------------------------------------- advantages


def test_group_advantages_equal_rewards_are_zero():
    # float32 rewards: eight 0.9s would give -0.056 with float32 arithmetic (see module docstring)
    r = torch.tensor([[0.1] * 8, [0.9] * 8, [1.0] * 8, [0.0] * 8])
    a = group_advantages(r)
    assert a.dtype == torch.float32 and a.shape == (4, 8)
    assert not torch.isnan(a).any()
    assert torch.equal(a, torch.zeros(4, 8))


def test_group_advantages_hand_values_and_independent_groups():
    # group 1: [1,0,0,0]: mean 0.25, unbiased var (0.75² + 3·0.25²)/3 = 0.25, std 0.5
    # group 2: [0,0,1,1]: mean 0.5, unbiased var 4·0.25/3 = 1/3, std 0.5773502691896258
    a = group_advantages(t([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))
    hi1, lo1 = 0.75 / 0.500001, -0.25 / 0.500001  # 1.499997..., -0.499999...
    hi2 = 0.5 / (0.5773502691896258 + 1e-6)  # 0.866024...
    expected = t([[hi1, lo1, lo1, lo1], [-hi2, -hi2, hi2, hi2]])
    assert torch.allclose(a, expected, rtol=0, atol=1e-12)
    assert a[0, 0].item() == pytest.approx(1.499997, abs=1e-6)
    assert a[1, 2].item() == pytest.approx(0.8660239, abs=1e-6)
    # each group is normalized on its own: changing group 2 leaves group 1 unchanged
    b = group_advantages(t([[1.0, 0.0, 0.0, 0.0], [5.0, 3.0, 2.0, 7.0]]))
    assert torch.equal(a[0], b[0])


def test_group_advantages_singleton_groups_follow_verl():
    # verl: a group of one gets mean 0 and std 1, so A = r / (1 + 1e-6), not 0
    a = group_advantages(t([[1.0], [0.0], [0.5]]))
    assert torch.allclose(a, t([[1.0 / 1.000001], [0.0], [0.5 / 1.000001]]), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- KL


def test_kl_k3_values_and_clamps():
    assert torch.equal(kl_k3(t([-1.0, -3.0]), t([-1.0, -3.0])), t([0.0, 0.0]))
    # ref - logp = 0.5: e^0.5 - 0.5 - 1 = 0.14872127070012814
    assert kl_k3(t([-1.0]), t([-0.5])).item() == pytest.approx(0.14872127070012814, abs=1e-15)
    # ref - logp = -0.5: e^-0.5 + 0.5 - 1 = 0.10653065971263342
    assert kl_k3(t([-0.5]), t([-1.0])).item() == pytest.approx(0.10653065971263342, abs=1e-15)
    # ref - logp = 30 -> clamped to 20 -> e^20 - 21 = 485165174.4 -> clamped to 10
    assert kl_k3(t([-40.0]), t([-10.0])).item() == 10.0
    assert kl_k3(t([-40.0]), t([-10.0]), kl_clamp=1e12).item() == pytest.approx(math.exp(20) - 21)
    # ref - logp = -30 -> clamped to -20 -> e^-20 + 19 -> clamped to 10
    assert kl_k3(t([-10.0]), t([-40.0])).item() == 10.0
    g = torch.Generator().manual_seed(0)
    logp, ref = -3 * torch.rand(1000, generator=g), -3 * torch.rand(1000, generator=g)
    assert (kl_k3(logp, ref) >= 0).all()


# ----------------------------------------------------------------------------- policy loss


def _pl(ratio, adv, **kw):
    loss, clipped = policy_loss(t([math.log(ratio)]), t([0.0]), t([adv]), **kw)
    return loss.item(), bool(clipped.item())


def test_policy_loss_cases():
    assert _pl(1.1, 2.0) == (pytest.approx(-2.2), False)  # inside the clip range
    assert _pl(1.1, -2.0) == (pytest.approx(2.2), False)
    assert _pl(1.5, 2.0) == (pytest.approx(-2.4), True)  # A>0, ratio 1.5 -> 1.2: -1.2·A
    assert _pl(0.5, 2.0) == (pytest.approx(-1.0), False)  # A>0, ratio 0.5: max(-1.0, -1.6) = -1.0
    assert _pl(0.5, -2.0) == (pytest.approx(1.6), True)  # A<0, ratio 0.5 -> 0.8: 0.8·|A|
    assert _pl(1.5, -2.0) == (pytest.approx(3.0), False)  # A<0, ratio 1.5: max(3.0, 2.4) = 3.0
    assert _pl(5.0, -2.0) == (pytest.approx(6.0), False)  # dual clip: min(10, 3·|A|) = 6
    assert _pl(5.0, -2.0, clip_ratio_c=None) == (pytest.approx(10.0), False)
    assert _pl(5.0, 2.0) == (pytest.approx(-2.4), True)  # dual clip only for A<0
    assert _pl(1.5, 2.0, clip_high=0.28) == (pytest.approx(-2.56), True)  # asymmetric clip
    with pytest.raises(ValueError):
        policy_loss(t([0.0]), t([0.0]), t([1.0]), clip_ratio_c=1.0)


def test_policy_loss_broadcasts_sequence_advantages():
    logp = t([[0.0, math.log(1.5)], [0.0, math.log(0.5)]])
    loss, clipped = policy_loss(logp, torch.zeros_like(logp), t([1.0, -1.0]))
    assert torch.allclose(loss, t([[-1.0, -1.2], [1.0, 0.8]]))
    assert clipped.tolist() == [[False, True], [False, True]]


# ----------------------------------------------------------------------------- token mean / SFT


def test_token_mean_is_over_tokens_not_sequences():
    x = t([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    token_level = (1 + 2 + 3 + 10) / 4  # 4.0
    sequence_level = ((1 + 2 + 3) / 3 + 10 / 1) / 2  # 6.0
    assert token_mean(x, mask).item() == token_level == 4.0
    assert token_mean(x, mask).item() != sequence_level
    # weights scale the summands only: (0.5·1 + 2 + 3 + 2·10) / 4
    w = t([[0.5, 1.0, 1.0], [2.0, 1.0, 1.0]])
    assert token_mean(x, mask, w).item() == pytest.approx(25.5 / 4)
    empty = token_mean(x, torch.zeros_like(mask))
    assert empty.item() == 0.0 and not torch.isnan(empty)


def test_sft_nll_masking_and_weights():
    logp = t([[-1.0, -2.0, -float("inf")], [-3.0, float("nan"), -5.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert sft_nll(logp, mask).item() == pytest.approx((1 + 2 + 3) / 3)  # 2.0, masked inf/nan ignored
    assert sft_nll(logp, mask, 0.2).item() == pytest.approx(0.2 * 2.0)
    assert sft_nll(logp, mask, torch.full_like(logp, 0.2)).item() == pytest.approx(0.4)


def test_entropy_from_logits():
    # uniform over 4 -> ln 4; a near one-hot distribution with huge logits stays finite (0)
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1000.0, 0.0, 0.0, 0.0]])
    e = entropy_from_logits(logits)
    assert e[0].item() == pytest.approx(math.log(4.0), abs=1e-6)
    assert e[1].item() == pytest.approx(0.0, abs=1e-6)
    assert e.dtype == torch.float32 and torch.isfinite(e[:2]).all()
    # p = (3/4, 1/4): -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.5623351446188083
    p = torch.tensor([[0.75, 0.25]])
    assert entropy_from_logits(p.log()).item() == pytest.approx(0.5623351446188083, abs=1e-6)
    assert entropy_from_logits(logits[:1].to(torch.bfloat16)).dtype == torch.float32


# ----------------------------------------------------------------------------- grpo_loss


def _mixed_batch():
    """3 rows x 4 tokens: row 0 RL (A=+1, ratios 1, 1, 1.5 on t=1..3), row 1 SFT (t=0..2),
    row 2 RL (A=-0.5, ratio 1 on t=0..1)."""
    old = t([[-1.0, -1.0, -2.0, -1.0], [0.0, 0.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    logp = t([[-1.0, -1.0, -2.0, -1.0 + math.log(1.5)], [-1.0, -2.0, -0.5, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    adv = t([1.0, 0.0, -0.5])
    rl = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    sft = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    return logp, old, adv, rl, sft


def test_grpo_loss_mixed_batch_hand_computed():
    logp, old, adv, rl, sft = _mixed_batch()
    out = grpo_loss(logp, old, None, adv, rl, sft_mask=sft, sft_weight=0.2)
    rl_sum = (-1.0) + (-1.0) + (-1.2) + 0.5 + 0.5  # row 0: -A·1, -A·1, -A·1.2 (clipped); row 2: 0.5·1 twice
    sft_sum = 0.2 * (1.0 + 2.0 + 0.5)  # 0.7
    assert out.num_tokens == 8
    assert out.loss.item() == pytest.approx((rl_sum + sft_sum) / 8)  # -1.5 / 8 = -0.1875
    assert out.loss.item() == pytest.approx(-0.1875)
    assert out.policy_loss.item() == pytest.approx(rl_sum / 5)  # -0.44
    assert out.clip_fraction.item() == pytest.approx(1 / 5)
    assert out.sft_loss.item() == pytest.approx(3.5 / 3)
    assert out.kl.item() == 0.0
    # KL on the RL tokens: ref - logp = 0.5 everywhere -> + 0.1 · 0.14872127070012814 per RL token
    ref = logp + 0.5
    with_kl = grpo_loss(logp, old, ref, adv, rl, sft_mask=sft, sft_weight=0.2, kl_coef=0.1)
    assert with_kl.loss.item() == pytest.approx((-1.5 + 5 * 0.1 * 0.14872127070012814) / 8)
    assert with_kl.kl.item() == pytest.approx(0.14872127070012814)


def test_grpo_loss_kl_coef_zero_ignores_ref_and_masks_must_be_disjoint():
    logp, old, adv, rl, sft = _mixed_batch()
    a = grpo_loss(logp, old, None, adv, rl, sft_mask=sft, sft_weight=0.2)
    b = grpo_loss(logp, old, logp + 3.0, adv, rl, sft_mask=sft, sft_weight=0.2, kl_coef=0.0)
    assert a.loss.item() == b.loss.item()
    with pytest.raises(ValueError, match="overlap"):
        grpo_loss(logp, old, None, adv, rl, sft_mask=rl.clone())
    with pytest.raises(ValueError):
        grpo_loss(logp, old, None, adv, rl, kl_coef=0.1)
    # pure RL batch: the plain token mean of the per-token policy loss
    c = grpo_loss(logp, old, None, adv, rl)
    assert c.loss.item() == pytest.approx(-2.2 / 5) and c.num_tokens == 5


def test_grpo_loss_normalizer_for_gradient_accumulation():
    logp, old, adv, rl, sft = _mixed_batch()
    full = grpo_loss(logp, old, None, adv, rl, sft_mask=sft, sft_weight=0.2).loss
    parts = [
        grpo_loss(logp[s], old[s], None, adv[s], rl[s], sft_mask=sft[s], sft_weight=0.2, normalizer=8).loss
        for s in (slice(0, 2), slice(2, 3))
    ]
    assert (parts[0] + parts[1]).item() == pytest.approx(full.item())


def test_grpo_loss_gradients():
    logp, old, adv, rl, sft = _mixed_batch()
    logp = logp.clone().requires_grad_(True)
    out = grpo_loss(logp, old, logp.detach() + 0.5, adv, rl, sft_mask=sft, sft_weight=0.2, kl_coef=0.0)
    out.loss.backward()
    g = logp.grad
    inactive = ~(rl | sft)
    assert (g[inactive] == 0).all()  # exactly 0 on masked-out tokens
    # d/dlogp of -A·ratio at ratio 1 is -A; divided by 8 active tokens
    assert g[0, 1].item() == pytest.approx(-1.0 / 8)
    assert g[0, 3].item() == 0.0  # clipped token: no gradient
    assert g[2, 0].item() == pytest.approx(0.5 / 8)
    assert g[1, 0].item() == pytest.approx(-0.2 / 8)  # SFT token: d(-0.2·logp)/dlogp / 8


# ----------------------------------------------------------------------------- token_logprobs


def _prompt(text, images=()):
    content = [{"type": "text", "text": text}] + [{"type": "image"} for _ in images]
    return Prompt([{"role": "user", "content": content}], list(images))


def _manual(model, batch, cmask):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    lp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    ent = entropy_from_logits(logits[:, :-1])
    pad = torch.zeros(lp.shape[0], 1)
    return torch.cat([pad, lp], 1) * cmask, torch.cat([pad, ent], 1) * cmask


def test_token_logprobs_text_left_padding(tiny_loaded):
    model, processor = tiny_loaded
    batch = collate_sft(
        processor,
        [_prompt("What is 3 + 4?"), _prompt("How many blue circles are there in the image?")],
        ["The answer is 7.", "<think> I count 2 blue circles and 3 more, so 2 + 3 = 5. </think> \\boxed{5}"],
    )
    assert (batch["attention_mask"][:, 0] == 0).any()  # left padding present
    cmask = (batch["labels"] != IGNORE_INDEX).float()
    with torch.no_grad():
        logp, ent = token_logprobs(model, batch["input_ids"], batch["attention_mask"], cmask, with_entropy=True)
        ref_lp, ref_ent = _manual(model, batch, cmask)
    assert logp.shape == batch["input_ids"].shape and logp.dtype == torch.float32
    assert (logp[cmask == 0] == 0).all() and (logp[cmask == 1] < 0).all()
    assert (logp - ref_lp).abs().max().item() < 1e-5
    assert (ent - ref_ent).abs().max().item() < 1e-5
    with torch.no_grad():
        # the token-mean NLL of the completion matches the SFT cross-entropy on the same labels
        assert sft_nll(logp, cmask).item() == pytest.approx(sft_loss(model, batch)[0].item(), abs=1e-5)
        assert token_logprobs(model, batch["input_ids"], batch["attention_mask"], cmask)[1] is None


def test_token_logprobs_micro_batches_with_images(tiny_loaded, test_images):
    model, processor = tiny_loaded
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
    batch = collate_sft(processor, prompts, responses)
    cmask = batch["labels"] != IGNORE_INDEX
    kw = {"pixel_values": batch["pixel_values"], "image_grid_thw": batch["image_grid_thw"]}
    ids, attn = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full, _ = token_logprobs(model, ids, attn, cmask, model_kwargs=kw)
        one, _ = token_logprobs(model, ids, attn, cmask, model_kwargs=kw, micro_batch_size=1)
        kw_rows = {**kw, "images_per_row": [1, 0, 2]}  # explicit, instead of counting <|vision_start|>
        two, _ = token_logprobs(model, ids, attn, cmask, model_kwargs=kw_rows, micro_batch_size=2)
    assert (full[cmask] < 0).all() and (full[~cmask] == 0).all()
    assert (one - full).abs().max().item() < 1e-5
    assert (two - full).abs().max().item() < 1e-5
    with pytest.raises(ValueError):
        token_logprobs(model, ids, attn, cmask, model_kwargs=kw, micro_batch_size=1, images_per_row=[1, 1, 2])
    # gradients flow through every micro-batch (autograd.grad: the shared model's .grad stays untouched)
    logp, _ = token_logprobs(model, ids, attn, cmask, model_kwargs=kw, micro_batch_size=1)
    emb = model.get_input_embeddings().weight
    (grad,) = torch.autograd.grad(logp.sum(), [emb])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_an_empty_mask_still_runs_the_model_while_training_so_the_loss_has_a_gradient_path():
    """A micro-batch with no token to score (all masks empty): under no_grad nothing runs and the log-probs are 0;
    while training one forward runs, the result is still 0, and a loss built on it backpropagates (zero gradients)
    instead of DeepSpeed refusing a loss without a grad_fn (and ZeRO-3 processes running different forwards)."""
    import torch

    from synergy.train.losses import token_logprobs

    torch.manual_seed(0)
    calls = []

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(11, 5)

        def forward(self, input_ids, attention_mask=None, use_cache=False):
            calls.append(input_ids.shape)
            return type("Out", (), {"logits": self.emb(input_ids)})()

    model = Tiny()
    ids = torch.randint(0, 11, (2, 6))
    am, empty = torch.ones_like(ids), torch.zeros_like(ids)
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, am, empty)
    assert not calls and float(lp.abs().sum()) == 0.0
    lp, _ = token_logprobs(model, ids, am, empty)
    assert len(calls) == 1 and float(lp.abs().sum()) == 0.0 and lp.grad_fn is not None
    lp.sum().backward()
    assert model.emb.weight.grad is not None and float(model.emb.weight.grad.abs().sum()) == 0.0
