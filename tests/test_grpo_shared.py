"""Prompt sharing (synergy/train/grpo/shared.py) equals the per-sequence log-prob path.

One batch as ``pack`` lays it out: image prompts (one and two images), a text prompt, ragged
completions (1 to 9 tokens, so left padding differs per row), and the hybrid rows of paper §3.1: a
progressive prefix variant (G continuations, SFT weight on the first row's prefix) and an
interleaved trace row (SFT only, no completion). Per-token log-probs, entropies and the GRPO loss
agree within 1e-5 and the gradients within 1e-4 in float32.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from synergy.prompts import Prompt
from synergy.train.grpo.batch import Rollouts, pack, select
from synergy.train.grpo.shared import prompt_groups, shared_token_logprobs
from synergy.train.losses import grpo_loss, token_logprobs

G = 3


def _prompt(text, images=(), prefix=""):
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return Prompt([{"role": "user", "content": content}], list(images), assistant_prefix=prefix)


@pytest.fixture(scope="module")
def images():
    """A red and a blue square on white, 56 px (as conftest's ``images``, module-scoped)."""
    from PIL import Image, ImageDraw

    out = []
    for colour, box in (("red", (8, 8, 28, 28)), ("blue", (30, 20, 50, 44))):
        im = Image.new("RGB", (56, 56), "white")
        ImageDraw.Draw(im).rectangle(box, fill=colour)
        out.append(im)
    return out


@pytest.fixture(scope="module")
def batch(tiny_model_bundle, images):
    """A ``Rollouts`` of 4 prompts x G plus an interleaved SFT row, and its model (float32)."""
    processor, tok = tiny_model_bundle.processor, tiny_model_bundle.tokenizer
    q1 = "How many red circles are there in the image?"
    variants = [_prompt(q1, images[:1]), _prompt("The answer is 3.", images),
                _prompt("How many blue squares are there?"), _prompt(q1, images[1:]),
                _prompt(q1, images[1:], prefix="<think> I count 2 blue squares and"),  # progressive prefix
                _prompt(q1, images[:1], prefix="<think> I count 1 red circles. </think> \\boxed{1}<|im_end|>")]
    words = tok("<think> I count 4 green triangles and 5 more, so 4 + 5 = 9. </think> \\boxed{9}",
                add_special_tokens=False)["input_ids"]
    rng = random.Random(0)
    seq_variant, comp, seq_rl, seq_w = [], [], [], []
    for v in (0, 1, 2, 4):  # prompt 3 is routed to its prefix variant 4
        for j in range(G):
            n_tok = rng.randint(1, 9)
            seq_variant.append(v)
            comp.append([rng.choice(words) for _ in range(n_tok)])
            seq_rl.append(True)
            seq_w.append(0.2 if v == 4 and j == 0 else 0.0)
    seq_variant.append(5)  # an interleaved SFT row: the trace is the prefix, no completion
    comp.append([])
    seq_rl.append(False)
    seq_w.append(1.0)
    stop = torch.tensor([tok.convert_tokens_to_ids("<|im_end|>")])
    ids, am, cm, sw, kw, _ = pack(processor, variants, seq_variant, comp, seq_rl, seq_w, stop)
    N = len(comp)
    ro = Rollouts(input_ids=ids, attention_mask=am, completion_mask=cm, model_kwargs=kw,
                  rewards=torch.zeros(N // G + 1, G), correct=torch.zeros(N, dtype=torch.bool),
                  format_ok=torch.zeros(N, dtype=torch.bool), truncated=torch.zeros(N, dtype=torch.bool),
                  lengths=cm.sum(1), sft_weight=sw, seq_variant=seq_variant)
    model = copy.deepcopy(tiny_model_bundle.model).float()
    return ro, model


def _both(model, ro, idx, *, variant_groups=True, with_entropy=True):
    ids, am, cm, sw, kw, c0 = select(ro, idx)
    mask = cm.bool() | (sw > 0)
    ref = token_logprobs(model, ids, am, mask, model_kwargs=kw, with_entropy=with_entropy)
    if not variant_groups:
        ro = copy.copy(ro)
        ro.seq_variant = None
    groups, plen = prompt_groups(ro, idx)
    got = shared_token_logprobs(model, ids, am, mask, groups=groups, prompt_lens=plen, model_kwargs=kw,
                                with_entropy=with_entropy)
    return ref, got, (ids, am, cm, sw, kw), groups


@pytest.mark.parametrize("idx", [list(range(13)), [0, 1, 2, 6, 7], [3, 4, 5], [9, 10, 11, 12], [8]],
                         ids=["all", "image+text", "two-images", "hybrid", "one-row"])
def test_shared_logprobs_equal_per_sequence(batch, idx):
    ro, model = batch
    with torch.no_grad():
        (lp, ent), (lp2, ent2), (_, _, cm, sw, _), groups = _both(model, ro, idx)
    mask = cm.bool() | (sw > 0)
    assert mask.sum() > 0 and (lp[mask] != 0).all()
    torch.testing.assert_close(lp2, lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent2, ent, atol=1e-5, rtol=0)
    assert (lp2[~mask] == 0).all()
    if len(idx) > 4:
        assert max(groups) + 1 < len(idx)  # something was shared


def test_groups_without_variants_match_by_tokens_and_images(batch):
    ro, model = batch
    idx = list(range(13))
    by_variant, plen = prompt_groups(ro, idx)
    bare = copy.copy(ro)
    bare.seq_variant = None
    by_content, plen2 = prompt_groups(bare, idx)
    assert plen == plen2
    # variant 3 was never used; the rest are distinct prompts, so both groupings are the same partition
    assert by_variant == by_content == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    with torch.no_grad():
        (lp, _), (lp2, _), _, _ = _both(model, ro, idx, variant_groups=False)
    torch.testing.assert_close(lp2, lp, atol=1e-5, rtol=0)


def test_shared_loss_and_gradients_equal_per_sequence(batch):
    ro, model = batch
    idx = list(range(13))
    ids, am, cm, sw, kw, c0 = select(ro, idx)
    mask = cm.bool() | (sw > 0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        base, _ = token_logprobs(model, ids, am, mask, model_kwargs=kw)
    old = base + 0.05 * torch.randn(base.shape, generator=gen) * mask
    ref = base + 0.05 * torch.randn(base.shape, generator=gen) * mask
    adv = torch.randn(len(idx), generator=gen)
    groups, plen = prompt_groups(ro, idx)

    def loss_and_grads(fn):
        model.zero_grad(set_to_none=True)
        logp = fn()
        out = grpo_loss(logp, old, ref, adv, cm, kl_coef=0.005, sft_mask=sw > 0, sft_weight=sw,
                        normalizer=float(mask.sum()))
        out.loss.backward()
        return out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    a, ga = loss_and_grads(lambda: token_logprobs(model, ids, am, mask, model_kwargs=kw)[0])
    b, gb = loss_and_grads(lambda: shared_token_logprobs(model, ids, am, mask, groups=groups, prompt_lens=plen,
                                                         model_kwargs=kw)[0])
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.sft_loss, a.sft_loss, atol=1e-5, rtol=0)
    assert ga.keys() == gb.keys() and len(ga) > 10
    assert any("visual" in k for k in ga)  # the gradient reaches the vision tower through the shared prompt
    for k in ga:
        torch.testing.assert_close(gb[k], ga[k], atol=1e-4, rtol=0, msg=k)
    assert max(float(g.abs().max()) for g in ga.values()) > 1e-3  # the gradients are not all ~0


def test_bad_groups_are_refused(batch):
    ro, model = batch
    ids, am, cm, sw, kw, _ = select(ro, [0, 1, 2])
    with pytest.raises(ValueError, match="one entry per row"):
        shared_token_logprobs(model, ids, am, cm, groups=[0, 0], prompt_lens=[5, 5], model_kwargs=kw)
    groups, plen = prompt_groups(ro, [0, 1, 2])
    with pytest.raises(ValueError, match="does not fit its group"):
        shared_token_logprobs(model, ids, am, cm, groups=groups, prompt_lens=[plen[0], plen[1] - 1, plen[2]],
                              model_kwargs=kw)


# ---------------------------------------------------------------------------------------- whole steps


def _grpo_rows():
    from synergy.data.suite import build_train_set

    return build_train_set("rl-shared", 16, {"exists": 1.0}, style="none", modality="image", seed=0, image_size=56,
                           max_objects=4, exclude=set())


def _grpo_settings(**kw):
    from synergy.config import GRPOSettings

    base = dict(learning_rate=2e-3, steps=2, prompts_per_step=4, mini_batch_size=2, num_generations=4,
                micro_batch_size=8, max_new_tokens=8, kl_coef=0.05, save_every_steps=10, reasoning_instruction=False)
    base.update(kw)
    return GRPOSettings(**base)


def _final(tmp, name):
    import polars as pl
    from safetensors.torch import load_file

    return load_file(tmp / name / "model.safetensors"), pl.read_parquet(tmp / f"{name}.parquet")


def _compare_runs(tmp, a, b):
    wa, la = _final(tmp, a)
    wb, lb = _final(tmp, b)
    assert la["step"].to_list() == lb["step"].to_list() == [1, 2]
    assert la["response_length"].to_list() == lb["response_length"].to_list()  # the same samples
    for col in ("policy_loss", "kl", "entropy", "grad_norm"):
        assert (la[col] - lb[col]).abs().max() < 1e-5, col
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    return la, lb


def test_train_grpo_with_and_without_sharing_agree(tiny_model_dir, tmp_path):
    from synergy.train.grpo import train_grpo

    rows = _grpo_rows()
    for share in (False, True):
        name = f"share-{share}"
        train_grpo(tiny_model_dir, rows, tmp_path / name, log_path=tmp_path / f"{name}.parquet",
                   state_dir=tmp_path / f"{name}-state", cfg=_grpo_settings(share_prompt=share), seed=3)
    _compare_runs(tmp_path, "share-False", "share-True")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="open: under ZeRO-2 both runs sample the same and log the same step 1, but "
                   "with sharing step 2 has kl 9e-7 and grad_norm 1.4e-4 where the per-sequence run has exactly 0 "
                   "(all advantages 0 here, so AdamW turns a float-level KL gradient at step 1 into a full step)")
def test_two_process_zero2_grpo_with_and_without_sharing_agree(tiny_model_dir, tmp_path):
    """DeepSpeed ZeRO-2 over gloo, 2 CPU processes: sharing changes nothing there either.

    Each process trains 1 prompt x G = 4 sequences per update: one micro-batch of 4 (DeepSpeed needs
    micro_batch_size to divide each process's share), in which the 4 rows share their prompt.
    """
    pytest.importorskip("deepspeed")
    from synergy.launch import run_trainer

    rows = _grpo_rows()
    for share in (False, True):
        name = f"share-{share}"
        run_trainer("grpo", processes=2, init_dir=tiny_model_dir, rows=rows, out_dir=tmp_path / name,
                    log_path=tmp_path / f"{name}.parquet", state_dir=tmp_path / f"{name}-state",
                    cfg=_grpo_settings(share_prompt=share, deepspeed_stage=2, micro_batch_size=4), threads=2,
                    log_file=tmp_path / f"{name}.log", seed=3)
    _compare_runs(tmp_path, "share-False", "share-True")
