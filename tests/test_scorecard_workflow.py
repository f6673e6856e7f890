"""The scorecard through the workflow (docs/scorecard.md): external arms evaluated by rule evaluate, rule scorecard.

A tiny study (base + one SFT arm) is run; its SFT arm's saved folder is copied elsewhere and scored as an
external arm with that arm's seeds: its samples and its scorecard equal the arm's own. A second tiny
Qwen2.5-VL of another size (its own tokenizer and processor) is scored too. Adding the external arms re-runs
no job of the study. The same study has a routed arm (base when its samples agree, else the SFT arm) whose
threshold is chosen on a held-out tune set (docs/routing.md §3).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import TEST_MODEL_KWARGS, synthetic_corpus
from tiny_study import run_study, tiny_study, write_config

pytestmark = pytest.mark.slow

STUDY = tiny_study(
    "card", pretrain_rows=32, pretrain_steps=2, curriculum_steps=1, max_new_tokens=(8, 8),
    sft={"epochs": 1, "batch_size": 4, "micro_batch_size": 4},
    arms=[{"name": "base", "kind": "base"}, {"name": "sft", "kind": "sft", "train_set": "pretrain"},
          {"name": "routed", "kind": "routed", "fast": "base", "slow": "sft",
           "settings": {"tune_set": "tune", "candidates": [0.0, 0.5, 1.0]}}],
)
STUDY["train_sets"].append({"name": "tune", "loader": "synthetic", "num_questions": 6, "style": "none",
                            "modality": "image", "templates": "all"})
BENCH = STUDY["benchmarks"][0]["name"]


def _other_model(dest: Path) -> None:
    """A tiny Qwen2.5-VL of another size than the study's, with a tokenizer and processor of its own."""
    from synergy.models import save_model
    from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

    cfg = TinyModelConfig(**{**TEST_MODEL_KWARGS, "hidden_size": 48, "num_layers": 1, "seed": 3})
    tokenizer = train_tokenizer(synthetic_corpus(seed=3), vocab_size=448)
    save_model(build_tiny_model(cfg, tokenizer), build_processor(tokenizer, cfg.image_size), dest)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """The tiny study's models, levels and the routed arm's evaluation, run once for this module."""
    wd = tmp_path_factory.mktemp("card")
    run_study(wd, "results/card/models/sft", "results/card/difficulty/levels.parquet",
              f"results/card/eval/routed/{BENCH}.parquet", configs=[write_config(wd, STUDY)])
    return wd


def test_the_routed_arms_threshold_is_chosen_on_its_tune_set(study_dir):
    from synergy.routing import choose_threshold

    res = study_dir / "results/card"
    tune = {a: pl.read_parquet(res / f"routing/tune/{a}/tune.parquet") for a in ("base", "sft")}
    assert all(t.height == 6 * 2 and set(t["bench"]) == {"tune"} for t in tune.values())  # k = 2 samples each
    chosen, _ = choose_threshold(tune["base"], tune["sft"], [0.0, 0.5, 1.0], names=("base", "sft"))
    routed = pl.read_parquet(res / f"eval/routed/{BENCH}.parquet")
    fast = routed.group_by("id").agg(pl.col("agreement").first(), pl.col("routed_to").first())
    assert ((fast["agreement"] >= chosen) == (fast["routed_to"] == "base")).all()
    log = (study_dir / f"logs/card/route_answers/routed/{BENCH}.log").read_text()
    assert f"threshold {chosen:.2f}" in log and "<- chosen" in log


def test_a_copied_arm_scores_as_the_arm_and_another_model_gets_a_scorecard(study_dir):
    tmp_path = study_dir
    study = tmp_path / "card.yaml"
    shutil.copytree(tmp_path / "results/card/models/sft", tmp_path / "outside/copy")
    _other_model(tmp_path / "outside/other")
    ext = tmp_path / "ext.yaml"
    ext.write_text(yaml.safe_dump({"external": [
        {"name": "copy", "path": "outside/copy", "seeds_of": "sft"},
        {"name": "other", "path": str(tmp_path / "outside/other"), "reasoning_instruction": False}]}))
    cards = [f"results/card/scorecards/{a}.{x}" for a in ("copy", "sft", "other") for x in ("md", "csv", "pdf")]
    out = run_study(tmp_path, *cards, configs=[study, ext])
    log = out.stdout + out.stderr
    for rule in ("build_base_model", "train_sft", "sample_difficulty"):
        assert f"rule {rule}:" not in log, f"adding external arms re-ran {rule}"

    res = tmp_path / "results/card"
    copy, arm = (pl.read_parquet(res / f"eval/{a}/{BENCH}.parquet") for a in ("copy", "sft"))
    assert copy.drop("arm").equals(arm.drop("arm")) and copy.height == 8 * 2

    card, own = (pl.read_csv(res / f"scorecards/{a}.csv") for a in ("copy", "sft"))
    for part in ("bench", "level", "gain", "words"):
        mine, theirs = (c.filter(pl.col("table") == part).drop("arm") for c in (card, own))
        assert mine.height and mine.equals(theirs), part
    closest = card.filter(pl.col("table") == "closest")
    assert closest.filter(pl.col("arm") == "sft")["distance"].item() == 0.0 == closest["distance"][0]  # ties: by name

    other = pl.read_csv(res / "scorecards" / "other.csv")
    evals = pl.read_parquet(res / f"eval/other/{BENCH}.parquet")
    acc = other.filter(pl.col("table") == "bench")["accuracy"].item()
    assert acc == pytest.approx(100 * evals["correct"].mean())
    assert set(other.filter(pl.col("table") == "closest")["arm"]) == {"base", "sft", "routed"}
    assert set(other.filter((pl.col("table") == "gain") & (pl.col("bench") == "all"))["level"]) == {f"L{i}" for i in range(1, 6)}
    md = (res / "scorecards" / "other.md").read_text()
    assert "without the reasoning instruction" in md and "## Gain over the base model by level" in md
    assert (res / "scorecards" / "other.pdf").read_bytes().startswith(b"%PDF")
