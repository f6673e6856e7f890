"""DAG tier: the workflow builds for every shipped config, and the pure helpers behind it."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synergy.config import load_config_file
from synergy.workflow import derived_seed, final_targets, train_templates

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(*args: str, cwd: Path = ROOT) -> dict[str, int]:
    """Job counts per rule of ``snakemake -n --forceall`` (as on a fresh clone, whatever results/ holds)."""
    out = subprocess.run([SNAKEMAKE, *args, "-n", "--forceall", "--quiet", "rules"], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M))
    return {k: int(v) for k, v in counts.items() if k != "total"}


def test_dry_run_of_the_whole_study_lists_every_job():
    counts = dry_run()
    assert counts == {"build_synthetic_benchmark": 5, "build_synthetic_train_set": 6, "build_base_model": 1,
                      "sample_difficulty": 5, "assign_levels": 1, "tabulate_level_counts": 1,
                      "train_sft": 4, "train_grpo": 6, "sample_train_pass_rates": 1, "build_mixing_set": 1,
                      "merge_models": 9, "evaluate": 20, "sample_route_tune": 2, "route_answers": 5, "tabulate_arms": 7,
                      "tabulate_level_gain": 1, "tabulate_reasoning_words": 1, "check_findings": 1, "tabulate_cost": 1,
                      "tabulate_routing": 1, "make_figure": 14, "make_report": 1,
                      "all": 1}


def test_smoke_study_runs_every_rule():
    counts = dry_run("--configfile", "config/smoke.yaml")
    assert counts == {"build_synthetic_benchmark": 2, "build_synthetic_train_set": 5, "build_base_model": 1,
                      "sample_difficulty": 2, "assign_levels": 1, "tabulate_level_counts": 1,
                      "train_sft": 2, "train_grpo": 2, "sample_train_pass_rates": 2, "build_mixing_set": 1,
                      "merge_models": 1, "evaluate": 6, "tabulate_arms": 6,
                      "tabulate_level_gain": 1, "tabulate_reasoning_words": 1, "check_findings": 1, "tabulate_cost": 1, "make_figure": 13, "make_report": 1,
                      "all": 1}


def test_one_table_builds_only_what_it_needs():
    counts = dry_run("results/embedded/tables/table2_kl.csv")
    assert counts["train_grpo"] == 2 and "train_sft" not in counts and "sample_train_pass_rates" not in counts
    assert counts["evaluate"] == 3 and counts["tabulate_arms"] == 1  # evaluation.per_job: arm


def test_merge_grid_needs_its_parents_and_merges_only():
    counts = dry_run("results/embedded/tables/merge_grid.csv")
    assert counts["merge_models"] == 9 and counts["train_sft"] == 1 and counts["train_grpo"] == 1
    assert counts["evaluate"] == 1 + 2 + 9 and "build_mixing_set" not in counts


def test_table7_needs_the_mixing_arm_and_its_source():
    counts = dry_run("results/embedded/tables/table7_length.csv")
    assert counts["build_mixing_set"] == 1 and counts["train_sft"] == 1 and counts["train_grpo"] == 1
    assert counts["evaluate"] == 2 and "merge_models" not in counts


def test_dry_run_of_the_level_table_lists_every_job():
    counts = dry_run("results/embedded/tables/level_counts.csv")
    assert counts == {"build_synthetic_benchmark": 5, "build_synthetic_train_set": 5, "build_base_model": 1,
                      "sample_difficulty": 5, "assign_levels": 1, "tabulate_level_counts": 1}


def test_one_benchmark_samples_need_only_their_own_inputs():
    counts = dry_run("results/embedded/difficulty/synth-chart.samples.parquet")
    assert counts["sample_difficulty"] == 1 and counts["build_synthetic_benchmark"] == 5  # train sets exclude all


@pytest.mark.parametrize("configs", [[], ["config/smoke.yaml"], ["config/paper.yaml"]], ids=["default", "smoke", "paper"])
def test_lint_is_clean_on_every_shipped_config(configs):
    """``snakemake --lint`` on the default, smoke and paper configs: no lint at all (each rule has its conda env,
    log, ...), not only exit status 0 (Snakemake exits 0 with lints too)."""
    args = ["--configfile", *configs] if configs else []
    out = subprocess.run([SNAKEMAKE, "--lint", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Lints for" not in text and "in a good condition" in text, text[-3000:]


def test_min_version_matches_the_profiles():
    """profiles/*/profile.yaml is read from Snakemake 9.19 on (older ones read config.yaml): the Snakefile says so."""
    assert sorted(p.name for p in (ROOT / "profiles").glob("*/*.yaml")) == ["profile.yaml"] * 3
    assert re.search(r'^min_version\("9\.19"\)', (ROOT / "Snakefile").read_text(), re.M)


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(0, "difficulty", "a") == derived_seed(0, "difficulty", "a")
    assert derived_seed(0, "difficulty", "a") != derived_seed(0, "difficulty", "b")
    assert derived_seed(0, "difficulty", "a") != derived_seed(1, "difficulty", "a")


def test_train_templates_all_means_every_benchmark_template():
    study = load_config_file(ROOT / "config/config.yaml")
    rl = next(t for t in study.train_sets if t.name == "rl")
    used = {t for b in study.benchmarks for t in b.templates}
    assert set(train_templates(study, rl)) == used


def test_final_targets_include_the_level_table():
    study = load_config_file(ROOT / "config/config.yaml")
    assert "results/embedded/tables/level_counts.csv" in final_targets(study)


def test_vllm_jobs_get_the_gpu_env_and_the_vllm_settings_only_they_use():
    from synergy.workflow import conda_env, vllm_params

    paper = load_config_file(ROOT / "config/config.yaml", ROOT / "config/paper.yaml")
    embedded = load_config_file(ROOT / "config/config.yaml")
    assert conda_env(paper.evaluation.backend) == "../envs/gpu.yaml"
    assert conda_env(embedded.evaluation.backend) == "../envs/cpu.yaml"
    assert (ROOT / "rules" / conda_env("vllm")).resolve() == ROOT / "envs/gpu.yaml"
    assert vllm_params(paper, "vllm")["limit_mm_per_prompt"] == 7
    assert vllm_params(embedded, "hf") == {}  # a vLLM setting never re-runs an hf job


def test_arms_others_build_on_are_trained_first():
    from synergy.config import load_config_file
    from synergy.workflow import arm_priority

    study = load_config_file(ROOT / "config/config.yaml")
    prio = {a: arm_priority(study, a) for a in study.arm_names}
    assert prio["base"] == 3                        # -> rl -> mixing
    assert prio["rl"] == prio["sft-eureka"] == 2    # mixing set / two-stage / merges start from them
    assert {a for a, p in prio.items() if p == 1} == set(study.arm_names) - {"base", "rl", "sft-eureka"}
    chain = load_config_file(ROOT / "config/config.yaml")  # a longer chain: mixing from twostage (from sft-eureka)
    raw = {**chain.raw, "arms": [*(a for a in chain.raw["arms"] if a["name"] != "mixing"), {"name": "mixing", "kind": "mixing", "source": "twostage",
                                                            "train_set": "eureka"}]}
    from synergy.config import load_config

    longer = load_config(raw)
    assert arm_priority(longer, "sft-eureka") == 3 and arm_priority(longer, "twostage") == 2
    assert arm_priority(longer, "rl") == 2  # still merged
