"""Command-line overrides (``--config``) keep the schema's types; unknown keys are named with a suggestion."""
import copy
import re
import subprocess

import pytest
import yaml
from tiny_study import ROOT, run_study, snakemake_cmd, tiny_study, write_config

from synergy.config import ConfigError, deep_update, load_config
from synergy.config.overrides import coerce_to_schema, suggest

SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())


def _base() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _as_snakemake(text: str):
    """A ``--config key=value`` value as Snakemake reads it: YAML's base loader, every scalar a string."""
    return yaml.load(text, Loader=yaml.BaseLoader)


def test_numbers_booleans_nulls_and_lists_get_the_schema_types():
    cfg = deep_update(_base(), {
        "difficulty": _as_snakemake("{num_samples: 16, thresholds: [16, 12, 8, 1], sampling: {temperature: 0.7}}"),
        "study": _as_snakemake("{seed: 3}"),
        "judge": _as_snakemake("{enabled: true, model: {local_path: null, path: Qwen/Qwen2.5-VL-32B-Instruct}}"),
        "grpo": _as_snakemake("{steps: 5, learning_rate: 3.0e-6, drop_easy: false}"),
    })
    assert cfg["difficulty"]["num_samples"] == "16"  # what Snakemake hands over
    changed = coerce_to_schema(cfg, SCHEMA)
    assert cfg["difficulty"]["num_samples"] == 16 and cfg["difficulty"]["thresholds"] == [16, 12, 8, 1]
    assert cfg["difficulty"]["sampling"]["temperature"] == 0.7 and cfg["study"]["seed"] == 3
    assert cfg["judge"]["enabled"] is True and cfg["judge"]["model"]["local_path"] is None
    assert cfg["judge"]["model"]["path"] == "Qwen/Qwen2.5-VL-32B-Instruct"
    assert cfg["grpo"]["steps"] == 5 and cfg["grpo"]["learning_rate"] == 3.0e-6 and cfg["grpo"]["drop_easy"] is False
    assert {"difficulty.num_samples", "difficulty.thresholds[0]", "study.seed", "judge.enabled"} <= set(changed)
    study = load_config(cfg)
    assert study.seed == 3 and study.difficulty.num_samples == 16


def test_strings_the_schema_wants_stay_strings():
    cfg = deep_update(_base(), {"study": _as_snakemake("{name: '007'}"),
                                "benchmarks": _as_snakemake("[{name: '1', loader: synthetic, num_questions: 4, "
                                                            "templates: {count_all: 1}}]")})
    coerce_to_schema(cfg, SCHEMA)
    assert cfg["study"]["name"] == "007" and cfg["benchmarks"][0]["name"] == "1"
    assert cfg["benchmarks"][0]["num_questions"] == 4 and cfg["benchmarks"][0]["templates"] == {"count_all": 1}


def test_a_value_of_the_wrong_kind_is_still_refused_with_its_key():
    cfg = deep_update(_base(), {"difficulty": _as_snakemake("{num_samples: many}")})
    with pytest.raises(ConfigError, match=r"'difficulty.num_samples': 'many' is not of type 'integer'"):
        load_config(cfg)


def test_unknown_keys_get_did_you_mean_and_the_keys_at_that_level():
    cfg = deep_update(_base(), {"grpo": {"learnig_rate": 1e-6}})
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "unknown config key 'grpo.learnig_rate' (did you mean 'learning_rate'?)" in msg
    assert re.search(r"keys here: accuracy_weight, .*kl_coef, .*learning_rate", msg)
    cfg = deep_update(_base(), {"difficulty": {"num_sample": 8}})
    with pytest.raises(ConfigError, match=r"'difficulty.num_sample' \(did you mean 'num_samples'\?\)"):
        load_config(cfg)
    assert suggest("zzz", ["a", "b"]) == "; keys here: a, b"


def test_unknown_arm_setting_gets_a_suggestion_too():
    cfg = _base()
    cfg["arms"] = copy.deepcopy(cfg["arms"])
    cfg["arms"][4]["settings"] = {"kl_cof": 0.1}
    with pytest.raises(ConfigError, match=r"kl_cof.*did you mean 'kl_coef'"):
        load_config(cfg)


@pytest.mark.parametrize("override, check", [
    ("difficulty={num_samples: 16, thresholds: [16, 12, 8, 1]}", None),
    ("study={seed: 1}", None),
    ("grpo={steps: 5, temperature: 0.9, freeze_vision: false}", None),
    ("judge={enabled: true}", "judge"),
])
def test_snakemake_config_overrides_build_the_dag(tmp_path, override, check):
    out = subprocess.run(snakemake_cmd(tmp_path, "-n", "--quiet", "rules", "--config", override, base=False),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    if check:
        assert re.search(rf"^{check}\s+\d+$", out.stdout, re.M)


def test_snakemake_names_an_unknown_override_key(tmp_path):
    out = subprocess.run(snakemake_cmd(tmp_path, "-n", "--config", "grpo={bta: 0.1}", base=False),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "unknown config key 'grpo.bta'; keys here: accuracy_weight" in out.stdout + out.stderr


@pytest.mark.slow
def test_the_command_line_and_an_override_file_give_the_same_files(tmp_path):
    """``--config 'synthetic={seed: 5, max_objects: 6}'`` and the same values in an override file: byte-identical
    benchmark files (the jobs get the typed values either way)."""
    target = "results/ov/data/bench/synth-mixed.parquet"
    cli, viafile = tmp_path / "cli", tmp_path / "file"
    for wd in (cli, viafile):
        wd.mkdir()
    study = tiny_study("ov")
    run_study(cli, target, "--config", "synthetic={seed: 5, max_objects: 6}", configs=[write_config(cli, study)],
              cores=1, timeout=600)
    study_file = {**study, "synthetic": {"seed": 5, "max_objects": 6}}
    run_study(viafile, target, configs=[write_config(viafile, study_file)], cores=1, timeout=600)
    a, b = (cli / target).read_bytes(), (viafile / target).read_bytes()
    assert a == b
    default = tmp_path / "default"
    default.mkdir()
    run_study(default, target, configs=[write_config(default, study)], cores=1, timeout=600)
    assert (default / target).read_bytes() != a  # the override changed the suite
