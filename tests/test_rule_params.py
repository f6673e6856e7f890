"""Each rule gets only the settings it uses, so a changed setting re-runs only the jobs that read it.

The unit tests compare the ``params:`` of every job of the embedded study's DAG before and after one
config change (Snakemake parses the real Snakefile; nothing runs). The slow test runs the base model's
pass-rate sampling for real on a tiny study, then changes the GRPO learning rate (no sampling re-runs)
and the rollout temperature (the sampling re-runs into a file of its own).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_study import forget_settings, tiny_study

from synergy.config import deep_update, load_config, load_config_file
from synergy.workflow import pass_rate_settings, train_samples_path

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _config(*changes: tuple[str, object]) -> dict:
    """config/config.yaml with ``(dotted key, value)`` changes."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key, value in changes:
        *parents, last = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def job_params(config: dict, workdir: Path) -> dict[tuple[str, str], dict]:
    """``(rule, outputs) -> params`` of every job of the DAG of ``config`` (Snakemake's own parse; nothing runs)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[path]),
                          snakefile=ROOT / "Snakefile", workdir=workdir)
        workflow = wf.dag(DAGSettings(forceall=True)).workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        return {(job.rule.name, " ".join(map(str, job.output))): dict(job.params.items()) for job in workflow.dag.jobs}


@pytest.fixture(scope="module")
def dags(tmp_path_factory):
    """``job_params`` of a config change, each in a directory of its own."""
    return lambda *changes: job_params(_config(*changes), tmp_path_factory.mktemp("dag"))


@pytest.fixture(scope="module")
def baseline(dags):
    return dags()


def _changed_rules(before: dict, after: dict) -> set[str]:
    """Rules with a job that is new, gone, or whose params changed. The report is left out: its title page
    shows a hash of the whole config, so any change rebuilds that one page, by design."""
    keys = set(before) | set(after)
    return {rule for rule, out in keys if before.get((rule, out)) != after.get((rule, out))} - {"make_report"}


def test_grpo_learning_rate_changes_only_grpo_training(dags, baseline):
    after = dags(("grpo.learning_rate", 2.0e-5))
    assert _changed_rules(baseline, after) == {"train_grpo"}


def test_rollout_temperature_reaches_pass_rate_sampling(dags, baseline):
    after = dags(("grpo.temperature", 0.7))
    assert {"train_grpo", "sample_train_pass_rates"} <= _changed_rules(baseline, after)
    new = [out for rule, out in after if rule == "sample_train_pass_rates"]
    old = [out for rule, out in baseline if rule == "sample_train_pass_rates"]
    assert new != old and len(new) == len(old) == 1  # a file of its own for the new setting


def test_level_thresholds_rerun_no_sampling(dags, baseline):
    after = dags(("difficulty.thresholds", [15, 9, 5, 2]))
    assert _changed_rules(baseline, after) == {"assign_levels"}


def test_settings_that_change_no_sample_rerun_no_sampling(dags, baseline):
    after = dags(("grading.max_failure_share", 0.3))
    assert _changed_rules(baseline, after) == {"train_grpo"}  # only GRPO stops on a grader-failure storm
    assert _changed_rules(baseline, dags(("base_model.trust_remote_code", True))) == set()  # no tiny build reads it
    # the image cap applies to training, rollouts and evaluation alike (tests/test_max_pixels.py)
    assert _changed_rules(baseline, dags(("prompt.max_pixels", 12544))) == {
        "sample_difficulty", "evaluate", "sample_route_tune", "sample_train_pass_rates", "train_sft", "train_grpo",
        "build_mixing_set"}


def test_pass_rate_settings_follow_the_arm_not_the_section():
    """An arm that overrides a rollout setting gets pass rates sampled with it, in a file of its own."""
    cfg = _config()
    arms = cfg["arms"]
    noeasy = next(a for a in arms if a["name"] == "rl-noeasy")
    noeasy["settings"] = {**noeasy.get("settings", {}), "temperature": 0.8, "num_generations": 4}
    arms.append({"name": "rl-noeasy-t1", "kind": "grpo", "train_set": "rl", "settings": {"drop_easy": True}})
    study = load_config(cfg)
    a, b = train_samples_path(study, "rl-noeasy"), train_samples_path(study, "rl-noeasy-t1")
    assert a != b
    key_a = re.search(r"/(\w+)\.samples\.parquet$", a).group(1)
    assert pass_rate_settings(study, "rl", key_a)["temperature"] == 0.8
    assert pass_rate_settings(study, "rl", key_a)["num_generations"] == 4
    same = load_config_file(ROOT / "config/config.yaml")
    assert train_samples_path(same, "rl-noeasy") == b  # the section's settings: the same file as before
    with pytest.raises(KeyError, match="no GRPO arm"):
        pass_rate_settings(study, "rl", "00000000")


# ---------------------------------------------------------------------------------------- a real run

STUDY = tiny_study(
    "params", pretrain_rows=32, pretrain_steps=2, curriculum_steps=1, max_new_tokens=(8, 8),
    train_sets=[
        {"name": "pretrain", "loader": "synthetic", "num_questions": 32, "style": "short", "modality": "image",
         "reasoning_share": 0.5, "templates": "all"},
        {"name": "rl", "loader": "synthetic", "num_questions": 6, "style": "none", "modality": "image",
         "templates": "all"},
    ],
    grpo={"num_generations": 2, "max_new_tokens": 6, "steps": 1, "prompts_per_step": 2, "mini_batch_size": 1},
    arms=[{"name": "base", "kind": "base"}, {"name": "rl-noeasy", "kind": "grpo", "train_set": "rl",
                                             "settings": {"drop_easy": True}}],
)


def _run(wd: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    path = wd / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args,
           "--configfile", str(ROOT / "config/config.yaml"), str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return out


@pytest.mark.slow
def test_learning_rate_change_reruns_no_pass_rate_sampling(tmp_path):
    merged = deep_update(yaml.safe_load((ROOT / "config/config.yaml").read_text()), copy.deepcopy(STUDY))
    target = train_samples_path(load_config(merged), "rl-noeasy")  # as Snakemake merges the two files
    _run(tmp_path, STUDY, target)
    assert (tmp_path / target).is_file()
    forget_settings(tmp_path, "params")  # change the study in place: without this, other settings are refused
    lr = copy.deepcopy(STUDY)
    lr["grpo"]["learning_rate"] = 3.0e-5
    out = _run(tmp_path, lr, target, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
    out = _run(tmp_path, lr, "results/params/models/rl-noeasy", "-n", "--quiet", "rules")
    assert re.search(r"^train_grpo\s+1$", out.stdout, re.M) and "sample_train_pass_rates" not in out.stdout
    hot = copy.deepcopy(STUDY)
    hot["grpo"]["temperature"] = 0.7
    out = _run(tmp_path, hot, "results/params/models/rl-noeasy", "-n", "--quiet", "rules")
    assert re.search(r"^sample_train_pass_rates\s+1$", out.stdout, re.M), out.stdout
