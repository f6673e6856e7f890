"""A tiny model warmed up for GRPO tests: 30 SFT steps on formatted answers with a random letter, so that
rewards vary within a group (shared by tests/test_grpo.py and tests/test_zero_grpo.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from synergy.models import freeze_vision, load_model, save_model
from synergy.prompts import build_prompt
from synergy.train.sft import collate_sft, sft_loss


def warm_model(model_dir, rows, out_dir: Path, batches: int, steps: int = 30) -> float:
    """Train ``model_dir`` for ``steps`` SFT steps over ``batches`` batches of 8 of ``rows``, save to ``out_dir``;
    returns the last loss."""
    model, processor = load_model(model_dir)
    freeze_vision(model)
    data = []
    for k in range(batches):
        part = rows[k * 8: (k + 1) * 8]
        responses = [f"<think> I count </think> \\boxed{{{'AB'[j % 2]}}}" for j in range(len(part))]
        data.append(collate_sft(processor, [build_prompt(r, False) for r in part], responses))
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for step in range(steps):
        loss, _ = sft_loss(model, data[step % batches])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_model(model, processor, out_dir)
    return loss.item()
