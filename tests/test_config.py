"""Config validation: unknown keys, wrong types and missing keys fail with the key's name."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synergy.config import ConfigError, DifficultyConfig, load_config, load_config_file

ROOT = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _invalid(mutate, match):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_shipped_configs_are_valid():
    study = load_config_file(ROOT / "config/config.yaml")
    assert len(study.benchmarks) == 5 and study.difficulty.thresholds == (12, 8, 5, 2) and len(study.arms) == 12 + 9
    smoke = load_config_file(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml")
    assert smoke.difficulty.thresholds == (12, 8, 5, 2)
    assert set(smoke.tables) == {"table1_sft_data", "table3_easy", "table6_synergy", "table7_length"}


def test_unknown_key_is_named():
    _invalid(lambda r: r["difficulty"].update(num_sample=16), "unknown config key 'difficulty.num_sample'")


def test_unknown_top_level_key_is_named():
    _invalid(lambda r: r.update(trainig={}), "unknown config key 'trainig'")


def test_unknown_key_inside_a_list_item_is_named():
    _invalid(lambda r: r["benchmarks"][2].update(num_question=3), r"unknown config key 'benchmarks\[2\].num_question'")


def test_wrong_type_is_named():
    _invalid(lambda r: r["difficulty"].update(num_samples="sixteen"),
             "config key 'difficulty.num_samples': 'sixteen' is not of type 'integer'")


def test_missing_required_key_is_named():
    _invalid(lambda r: r["difficulty"].pop("thresholds"), "missing required config key 'difficulty.thresholds'")


def test_unknown_template_is_named():
    _invalid(lambda r: r["benchmarks"][0]["templates"].update(count_dogs=1), r"benchmarks\[0\].templates.*count_dogs")


def test_duplicate_benchmark_names_fail():
    _invalid(lambda r: r["benchmarks"].append(copy.deepcopy(r["benchmarks"][0])), "duplicate names")


def test_pretrain_set_must_exist():
    _invalid(lambda r: r["base_model"]["pretrain"].update(train_set="nope"), "base_model.pretrain.train_set")


@pytest.mark.parametrize("thresholds", [[12, 12, 5, 2], [2, 5, 8, 12], [17, 8, 5, 2]])
def test_bad_thresholds_fail(thresholds):
    with pytest.raises(ConfigError, match="difficulty.thresholds"):
        DifficultyConfig.from_dict({**RAW["difficulty"], "thresholds": thresholds}, "difficulty")


def test_section_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config key 'difficulty.sampling.temprature'"):
        DifficultyConfig.from_dict({**RAW["difficulty"], "sampling": {**RAW["difficulty"]["sampling"], "temprature": 1}},
                                   "difficulty")


def test_snakemake_dag_build_fails_naming_the_key(tmp_path):
    bad = copy.deepcopy(RAW)
    bad["difficulty"]["num_samples"] = "x"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    snakemake = Path(sys.executable).with_name("snakemake")
    out = subprocess.run([snakemake, "-n", "--configfile", cfg], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "config key 'difficulty.num_samples'" in out.stdout + out.stderr


def test_arm_with_missing_parent_is_named():
    _invalid(lambda r: r["arms"][1].update(init="sft-nope"), r"arms\[1\].init.*'sft-nope', which is not an arm")


def test_cycle_of_arms_fails():
    def cycle(r):
        r["arms"][1]["init"] = "sft-s1.1-r1"
        r["arms"][2]["init"] = "sft-s1-gemini"
    _invalid(cycle, "form a cycle")


def test_unknown_override_in_arm_settings_is_named():
    _invalid(lambda r: r["arms"][4].update(settings={"kl_coeff": 0.1}), r"arms\[4\].*unknown config key 'grpo \(arm rl\).kl_coeff'")


def test_table_with_undeclared_arm_fails():
    _invalid(lambda r: r["tables"][1].update(arms=["base", "rl-typo"]), r"tables\[1\]' \(table2_kl\).*rl-typo")


def test_arm_settings_merge_defaults_with_overrides():
    study = load_config_file(ROOT / "config/config.yaml")
    assert study.arm_settings("rl-nokl").kl_coef == 0.0 and study.arm_settings("rl").kl_coef == 0.005
    assert study.arm_settings("twostage").max_new_tokens == 384 and study.arm_settings("rl").max_new_tokens == 64
    assert not study.arm("base").eval_reasoning and study.arm("rl").eval_reasoning


def test_merging_expands_into_merge_arms():
    study = load_config(copy.deepcopy(RAW))
    merges = [a for a in study.arms if a.kind == "merge"]
    assert [a.name for a in merges[:3]] == ["merge-linear-0.25", "merge-linear-0.5", "merge-linear-0.75"]
    assert {a.method for a in merges} == {"linear", "ties", "slerp"} and len(merges) == 9
    assert study.arm_chain("merge-ties-0.5") == ["merge-ties-0.5", "sft-eureka", "rl", "base"]
    cells = study.merging.grid()
    assert cells[0] == ("linear", 0, "rl") and cells[4] == ("linear", 1, "sft-eureka")
    raw = copy.deepcopy(RAW)
    raw["merging"]["endpoints"] = "merge"
    assert len([a for a in load_config(raw).arms if a.kind == "merge"]) == 15


def test_merging_parents_must_exist():
    _invalid(lambda r: r["merging"].update(sft_arm="sft-nope"), "'merging.sft_arm': 'sft-nope' is not an arm")
    _invalid(lambda r: r["merging"].update(methods=["dare"]), "merging.methods")


def test_mixing_arm_needs_a_source_and_traces():
    def no_source(r):
        next(a for a in r["arms"] if a["name"] == "mixing").pop("source")
    _invalid(no_source, "'arms\\[10\\].source'")
    _invalid(lambda r: next(a for a in r["arms"] if a["name"] == "mixing").update(train_set="rl"),
             "needs external traces")
    _invalid(lambda r: next(a for a in r["arms"] if a["name"] == "rl").update(source="sft-eureka"),
             "only kind mixing takes a source")


def test_hybrid_arm_needs_traces_and_known_mode():
    _invalid(lambda r: next(a for a in r["arms"] if a["name"] == "interleaved").update(train_set="rl"),
             "needs external traces")
    _invalid(lambda r: next(a for a in r["arms"] if a["name"] == "progressive")["settings"].update(hybrid="mixed"),
             "hybrid")


def test_merge_cycle_through_parents_is_reported():
    def cyc(r):
        next(a for a in r["arms"] if a["name"] == "sft-eureka")["init"] = "merge-linear-0.5"
    _invalid(cyc, "form a cycle")
