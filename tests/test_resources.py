"""synergy.resources: per-rule GPUs, CPUs, memory and run time from the study config, growing per retry."""
import copy
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from synergy.config import ConfigError, load_config, load_config_file
from synergy.resources import (
    GPU_MODEL_ENV,
    GPU_PARTITION_ENV,
    check_rule_names,
    gpu_processes,
    grow,
    rule_resources,
    rule_threads,
    snakemake_resources,
)

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
RAW = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def study(**resources) -> dict:
    raw = copy.deepcopy(RAW)
    raw["resources"] = resources
    return raw


def test_a_rule_entry_is_laid_over_the_default_key_by_key():
    raw = study(default={"mem_mb": 3000, "runtime": 30}, train_sft={"gpus": 8, "cpus_per_gpu": 6, "runtime": 600})
    r = rule_resources(raw, "train_sft")
    assert (r.gpus, r.cpus_per_gpu, r.mem_mb, r.runtime) == (8, 6, 3000, 600)
    other = rule_resources(raw, "evaluate")
    assert (other.gpus, other.mem_mb, other.runtime) == (0, 3000, 30)
    assert rule_resources({"compute": {"threads": 1}}, "evaluate").mem_mb == 4000  # no section: built-in default


def test_memory_and_runtime_grow_with_each_attempt():
    res = snakemake_resources(study(default={"mem_mb": 3000, "runtime": 45}), "evaluate")
    assert [res["mem_mb"](None, a) for a in (1, 2, 3)] == [3000, 6000, 9000]
    assert [res["runtime"](None, a) for a in (1, 2, 3)] == [45, 90, 135]
    with pytest.raises(ValueError, match="attempt"):
        grow(10, 0)


def test_memory_grows_to_its_cap_and_training_time_does_not_grow():
    """The paper study's GRPO job: 640 GB / 72 h; retries ask up to the 1 TB cap, never more, and 72 h each."""
    paper = load_config_file(ROOT / "config/config.yaml", ROOT / "config/paper.yaml").raw
    grpo = snakemake_resources(paper, "train_grpo", {})
    assert [grpo["mem_mb"](None, a) for a in (1, 2, 3, 10)] == [640000, 1000000, 1000000, 1000000]
    assert grpo["runtime"] == 4320  # a retried training resumes: no more time than the first attempt
    sft = snakemake_resources(paper, "train_sft", {})
    assert sft["runtime"] == 2880 and sft["nodes"] == 1
    ev = snakemake_resources(paper, "evaluate", {})  # not a training: time grows, up to max_runtime
    assert [ev["runtime"](None, a) for a in (1, 2, 3, 20)] == [480, 960, 1440, 4320]
    assert [ev["mem_mb"](None, a) for a in (1, 2, 3)] == [96000, 192000, 288000]


def test_the_environment_caps_too_and_the_smaller_cap_wins():
    raw = study(default={"mem_mb": 3000, "runtime": 45, "max_mem_mb": 8000})
    res = snakemake_resources(raw, "evaluate", {"SYNERGY_SLURM_MAX_MEM_MB": "5000", "SYNERGY_SLURM_MAX_RUNTIME": "100"})
    assert [res["mem_mb"](None, a) for a in (1, 2, 3)] == [3000, 5000, 5000]
    assert [res["runtime"](None, a) for a in (1, 2, 3)] == [45, 90, 100]
    res = snakemake_resources(raw, "evaluate", {"SYNERGY_SLURM_MAX_MEM_MB": "64000"})
    assert [res["mem_mb"](None, a) for a in (1, 2, 3)] == [3000, 6000, 8000]
    assert grow(10, 5, cap=25) == 25 and grow(10, 2, cap=None) == 20
    with pytest.raises(ConfigError, match="SYNERGY_SLURM_MAX_MEM_MB='lots' is not a whole number"):
        snakemake_resources(raw, "evaluate", {"SYNERGY_SLURM_MAX_MEM_MB": "lots"})


def test_a_first_attempt_above_its_cap_is_a_config_error():
    raw = study(default={"mem_mb": 3000, "max_mem_mb": 2000})
    with pytest.raises(ConfigError, match=r"'resources.evaluate.mem_mb': 3000 is above its cap 2000 \(max_mem_mb"):
        snakemake_resources(raw, "evaluate", {})
    with pytest.raises(ConfigError, match=r"runtime': 60 is above its cap 30 \(max_runtime or SYNERGY_SLURM_MAX_RUNTIME"):
        snakemake_resources(study(default={}), "evaluate", {"SYNERGY_SLURM_MAX_RUNTIME": "30"})


def test_gpu_rules_get_the_plugins_gpu_keys_and_cpu_rules_none():
    raw = study(default={"mem_mb": 1000}, train_grpo={"gpus": 4, "cpus_per_gpu": 8})
    env = {GPU_MODEL_ENV: "h100", GPU_PARTITION_ENV: "gpu"}
    gpu = snakemake_resources(raw, "train_grpo", env)
    assert {k: v for k, v in gpu.items() if k not in ("mem_mb", "runtime")} == {
        "gpu": 4, "nodes": 1, "cpus_per_gpu": 8, "gpu_model": "h100", "slurm_partition": "gpu"}
    cpu = snakemake_resources(raw, "assign_levels", env)  # the GPU knobs never leak to CPU jobs
    assert set(cpu) == {"mem_mb", "runtime"}
    bare = snakemake_resources(raw, "train_grpo", {})  # no knobs set: --gpus=4, cluster default partition
    assert "gpu_model" not in bare and "slurm_partition" not in bare and bare["gpu"] == 4


def test_threads_follow_the_job_kind():
    raw = study(default={"cpus": 3}, train_sft={"gpus": 2, "cpus_per_gpu": 5}, evaluate={"gpus": 1})
    assert rule_threads(raw, "train_sft") == 10        # gpus x cpus_per_gpu
    assert rule_threads(raw, "assign_levels") == 3     # cpus of the default entry
    assert rule_threads(raw, "evaluate") == 3          # a GPU job without cpus_per_gpu: cpus
    raw = study(default={})
    assert rule_threads(raw, "evaluate") == RAW["compute"]["threads"]
    assert rule_threads(raw, "assign_levels", default=1) == 1


def test_processes_are_one_per_gpu():
    assert gpu_processes({"gpu": 8, "mem_mb": 1}) == 8
    assert gpu_processes({"mem_mb": 1}) == 1 and gpu_processes({"gpu": 0}) == 1


@pytest.mark.parametrize("entry, match", [
    ({"gpus": -1}, r"resources.train_sft.gpus"),
    ({"mem_mb": 0}, r"resources.train_sft.mem_mb"),
    ({"runtime": "2h"}, r"resources.train_sft.runtime"),
    ({"gpu": 1}, r"unknown config key 'resources.train_sft.gpu'"),
])
def test_bad_entries_name_the_key(entry, match):
    with pytest.raises(ConfigError, match=match):
        load_config(study(train_sft=entry))


def test_a_resources_entry_must_name_a_rule():
    check_rule_names(study(default={}, evaluate={}), ["evaluate", "all"])
    with pytest.raises(ConfigError, match="no rule named 'train_stf'"):
        check_rule_names(study(train_stf={"gpus": 1}), ["train_sft", "evaluate"])


def test_the_embedded_study_asks_for_no_gpus_and_the_smoke_study_for_one():
    rules = [r for f in ROOT.glob("rules/*.smk") for r in re.findall(r"^rule (\w+):", f.read_text(), re.M)]
    assert len(rules) >= 11
    embedded = load_config_file(ROOT / "config/config.yaml").raw
    assert all("gpu" not in snakemake_resources(embedded, r) for r in rules)
    smoke = load_config_file(ROOT / "config/config.yaml", ROOT / "config/smoke.yaml").raw
    assert [r for r in rules if "gpu" in snakemake_resources(smoke, r)] == ["train_sft"]


def test_every_rule_takes_its_resources_from_the_study_config():
    """Each rule's ``resources:`` is ``**res("<its own name>")`` (a new rule without one fails here)."""
    for path in [ROOT / "Snakefile", *sorted(ROOT.glob("rules/*.smk"))]:
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            assert f'**res("{name}")' in body, f"rule {name} in {path.name} has no resources: **res(\"{name}\")"
            assert "threads:" not in body or f'rule_threads(config, "{name}"' in body, f"rule {name}: threads"


def test_snakemake_passes_the_attempt_so_a_retry_gets_more(tmp_path):
    """A real Snakemake run: the job fails unless it was given twice its first memory; one retry fixes it."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from synergy.resources import snakemake_resources
        config = {{"compute": {{"threads": 1}}, "resources": {{"default": {{"mem_mb": 100, "runtime": 5}}}}}}

        rule needs_more:
            output: "done.txt"
            resources: **snakemake_resources(config, "needs_more")
            shell: "test {{resources.mem_mb}} -ge 200 && test {{resources.runtime}} -eq 10 && echo {{resources.mem_mb}} > {{output}}"
    """))
    run = subprocess.run([SNAKEMAKE, "--cores", "1", "--retries", "1", "--quiet"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "done.txt").read_text().strip() == "200"
    again = subprocess.run([SNAKEMAKE, "--cores", "1", "--forceall", "--quiet"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert again.returncode != 0  # without a retry the first attempt's 100 MB fails: the retry was what helped
