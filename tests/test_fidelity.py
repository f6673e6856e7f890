"""Fidelity of config/paper.yaml to the paper: SFT on every row, two-stage from the SFT model's epoch 4.

Paper §2.1 fine-tunes on all of each SFT set and reports "the best checkpoint"; §3.1 starts the
two-stage RL from the Eureka-Distill SFT model's epoch-4 checkpoint. An SFT arm keeps the epoch
models listed in ``keep_epochs`` inside its model folder (``epochs/epoch-<k>``) and an arm with
``init_epoch: k`` starts from one of them (its KL reference too); the config says so or fails.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from synergy.config import ConfigError, SFTSettings, load_config, load_config_file
from synergy.data.suite import build_train_set
from synergy.train.sft_epochs import kept_epoch_dir
from synergy.train.sft_trainer import train_sft

ROOT = Path(__file__).resolve().parent.parent


def test_paper_config_trains_sft_on_every_row_and_two_stage_from_epoch_4():
    study = load_config_file(ROOT / "config/paper.yaml")
    for arm in ("sft-s1-gemini", "sft-s1.1-r1", "sft-eureka", "mixing"):
        s = study.arm_settings(arm)
        assert s.val_fraction == 0.0 and s.max_examples is None and s.select == "last", arm
    assert study.arm("twostage").init == "sft-eureka" and study.arm("twostage").init_epoch == 4
    assert 4 in study.arm_settings("sft-eureka").keep_epochs
    assert study.arm_settings("twostage").max_new_tokens == 16384


def _raw() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_init_epoch_needs_an_sft_parent_that_keeps_it():
    raw = _raw()
    sft = next(a for a in raw["arms"] if a["kind"] == "sft")
    grpo = next(a for a in raw["arms"] if a["kind"] == "grpo")
    bad = copy.deepcopy(raw)
    next(a for a in bad["arms"] if a["name"] == grpo["name"]).update(init=sft["name"], init_epoch=1)
    with pytest.raises(ConfigError, match=r"init_epoch.*keeps only epochs \[\].*keep_epochs"):
        load_config(bad)
    good = copy.deepcopy(bad)
    arm = next(a for a in good["arms"] if a["name"] == sft["name"])
    arm["settings"] = {**(arm.get("settings") or {}), "keep_epochs": [1]}
    assert load_config(good).arm(grpo["name"]).init_epoch == 1
    from_base = copy.deepcopy(raw)
    next(a for a in from_base["arms"] if a["name"] == grpo["name"]).update(init_epoch=1)
    with pytest.raises(ConfigError, match="not an SFT or mixing arm"):
        load_config(from_base)
    with pytest.raises(ConfigError, match=r"keep_epochs \[3\] are not epochs 1..2"):
        SFTSettings(learning_rate=1e-3, batch_size=2, micro_batch_size=2, epochs=2, keep_epochs=(3,))


def test_sft_keeps_the_listed_epochs_beside_the_chosen_one(tiny_model_dir, tmp_path):
    torch.set_num_threads(2)
    cfg = SFTSettings(learning_rate=1e-3, batch_size=4, micro_batch_size=2, epochs=2, warmup_ratio=0.0,
                      schedule="constant", val_fraction=0.0, select="last", max_length=1024, keep_epochs=(1,))
    rows = build_train_set("traces", 8, {"exists": 1.0}, style="reflective_short", modality="image", seed=3,
                           image_size=56, max_objects=4, exclude=set())
    summary = train_sft(tiny_model_dir, rows, tmp_path / "sft", log_path=tmp_path / "log.parquet",
                        state_dir=tmp_path / "state", cfg=cfg)
    assert summary["rows_used"] == 8 and summary["val_rows"] == 0 and summary["chosen_epoch"] == 2
    epoch1 = kept_epoch_dir(tmp_path / "sft", 1)
    assert epoch1 == tmp_path / "sft/epochs/epoch-1"
    final, first = load_file(tmp_path / "sft/model.safetensors"), load_file(epoch1 / "model.safetensors")
    assert set(final) == set(first) and any(not torch.equal(final[k], first[k]) for k in final)
    assert not (tmp_path / "state").exists()
    with pytest.raises(FileNotFoundError, match="keeps no epoch-2 model.*keep_epochs"):
        kept_epoch_dir(tmp_path / "sft", 2)
