"""The MergeKit backend (synergy/merge/mergekit_backend.py) agrees with the native engine on tiny arms.

Skipped, with the reason, when MergeKit cannot be run: it is an optional install in its own
environment (envs/mergekit.yaml; point ``SYNERGY_MERGEKIT_PYTHON`` at that environment's python).
Linear and SLERP agree up to the bf16 rounding of float32 results that differ in the last bits, TIES
on all but the entries its two tie rules decide (docs/merging.md §3).
"""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from synergy.merge import MergeError, MergeSettings, merge_models, trim_threshold
from synergy.merge.mergekit_backend import mergekit_available, mergekit_config

WHY = mergekit_available()


@pytest.fixture(scope="module")
def arms(tiny_model_bundle, tmp_path_factory):
    """base, rl, sft: the tiny Qwen2.5-VL and two perturbations of it (bf16, as trained arms are saved)."""
    root = tmp_path_factory.mktemp("arms")
    src = tiny_model_bundle.path
    weights = load_file(src / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    for name, noise in (("base", 0.0), ("rl", 0.02), ("sft", 0.02)):
        d = root / name
        shutil.copytree(src, d)
        out = {}
        for k, w in weights.items():
            w = w.float()
            if noise and w.dtype.is_floating_point:
                w = w + noise * torch.randn(w.shape, generator=g)
            out[k] = w.to(torch.bfloat16)
        save_file(out, d / "model.safetensors", metadata={"format": "pt"})
    return root


def test_config_names_the_parents_and_settings(arms):
    cfg = mergekit_config(arms / "rl", arms / "sft", MergeSettings("ties", 0.25, density=0.4, scale=0.9), arms / "base")
    assert cfg["merge_method"] == "ties" and cfg["base_model"] == str(arms / "base")
    assert [m["parameters"]["weight"] for m in cfg["models"]] == [0.75, 0.25]
    assert cfg["parameters"] == {"normalize": True, "lambda": 0.9}
    assert cfg["dtype"] == "float32" and cfg["out_dtype"] == "bfloat16"
    with pytest.raises(MergeError, match="base_dir"):
        mergekit_config(arms / "rl", arms / "sft", MergeSettings("ties", 0.25))


@pytest.mark.skipif(WHY is not None, reason=f"MergeKit not available: {WHY}")
@pytest.mark.parametrize("method", ["linear", "slerp", "ties"])
def test_backends_agree_on_tiny_arms(arms, tmp_path, method):
    base = arms / "base" if method == "ties" else None
    out = {}
    for backend in ("native", "mergekit"):
        s = merge_models(arms / "rl", arms / "sft", tmp_path / backend, MergeSettings(method, 0.25, backend=backend),
                         base_dir=base)
        assert s["backend"] == backend
        out[backend] = load_file(tmp_path / backend / "model.safetensors")
    a, b = out["native"], out["mergekit"]
    assert set(a) == set(b)
    differ = at_threshold = total = 0
    parents = {n: load_file(arms / n / "model.safetensors") for n in ("base", "rl", "sft")}
    for k in a:
        assert a[k].dtype == b[k].dtype == torch.bfloat16, k
        diff = (a[k].float() - b[k].float()).abs()
        total += diff.numel()
        differ += int((diff > 0).sum())
        # float32 results that differ in their last bits (summation order) round to bf16 values one step
        # apart at most; near zero (cancellation) the step is tiny: 1e-6 absolute covers it
        close = (diff <= 2 ** -7 * torch.maximum(a[k].float().abs(), b[k].float().abs())) | (diff <= 1e-6)
        if method != "ties":
            assert bool(close.all()), f"{k}: {int((~close).sum())} entries differ by more than a rounding step"
            continue
        # TIES: beyond rounding, entries differ only at the two tie rules (docs/merging.md §3): a task vector's
        # magnitude at its trimming threshold, or trimmed task vectors whose weighted sum is exactly 0
        tied = torch.zeros(diff.shape, dtype=torch.bool)
        wsum = torch.zeros(diff.shape)
        for arm, w in (("rl", 0.75), ("sft", 0.25)):
            delta = parents[arm][k].float() - parents["base"][k].float()
            thr = trim_threshold(delta.abs(), 0.5)
            tied |= delta.abs() == thr
            wsum += w * torch.where(delta.abs() >= thr, delta, torch.zeros_like(delta))
        bad = ~close & ~tied & (wsum != 0)
        assert not bad.any(), f"{k}: {int(bad.sum())} entries differ away from the threshold"
        at_threshold += int((~close).sum())
    print(f"{method}: {differ} of {total} entries differ, {at_threshold} by more than rounding (all at a tie rule)")


def test_missing_mergekit_is_a_clear_error(arms, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGY_MERGEKIT_PYTHON", "/nonexistent/python")
    with pytest.raises(MergeError, match="SYNERGY_MERGEKIT_PYTHON"):
        merge_models(arms / "rl", arms / "sft", tmp_path / "x", MergeSettings("linear", 0.5, backend="mergekit"))
