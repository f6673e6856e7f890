"""Optional tracking through accelerate's trackers: off by default, TensorBoard event files when on."""
from pathlib import Path

import pytest
import yaml

from synergy.config import ConfigError, deep_update, load_config
from synergy.train.tracking import TRACKING_DIR_ENV, TRACKING_ENV, tracker_kwargs
from synergy.workflow import job_environment

ROOT = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_off_by_default_and_named_by_the_config():
    env = job_environment(load_config(yaml.safe_load((ROOT / "config/config.yaml").read_text())))
    assert env[TRACKING_ENV] == "" and tracker_kwargs(env) == {}
    on = load_config(deep_update(yaml.safe_load((ROOT / "config/config.yaml").read_text()),
                                 {"tracking": {"backends": ["tensorboard", "mlflow"]}}))
    env = job_environment(on)
    assert tracker_kwargs(env) == {"log_with": ["tensorboard", "mlflow"], "project_dir": "logs/embedded/tracking"}
    with pytest.raises(ConfigError, match="tracking.backends"):
        load_config(deep_update(yaml.safe_load((ROOT / "config/config.yaml").read_text()),
                                {"tracking": {"backends": ["neptune"]}}))
    with pytest.raises(ValueError, match="unknown tracker"):
        tracker_kwargs({TRACKING_ENV: "neptune"})


def test_tensorboard_gets_every_step_of_a_training_run(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from synergy.train import tracking
    from synergy.train.core import MetricsLog, build_accelerator

    monkeypatch.setenv(TRACKING_ENV, "tensorboard")
    monkeypatch.setenv(TRACKING_DIR_ENV, str(tmp_path / "tb"))
    acc = build_accelerator(grad_accum=1, deepspeed_stage=None, seed=0)
    assert tracking.start(acc, "rl-test", {"learning_rate": 1e-6, "hybrid": "none", "steps": 3})
    metrics = MetricsLog(tmp_path / "log.parquet", [], acc)
    for step, reward in ((1, 0.25), (2, 0.5), (3, float("nan"))):
        metrics.append({"step": step, "reward": reward, "accuracy": reward / 2, "arm": "x"})
    tracking.finish(acc)
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, list((tmp_path / "tb").rglob("*"))
    ea = EventAccumulator(str(events[0].parent))
    ea.Reload()
    assert [(e.step, round(e.value, 4)) for e in ea.Scalars("reward")] == [(1, 0.25), (2, 0.5)]  # NaN not logged
    assert [e.step for e in ea.Scalars("accuracy")] == [1, 2]
    assert len(metrics.rows) == 3  # the parquet record keeps every row
