"""The rehearsal of the paper study (config/rehearsal.yaml; docs/paper-study.md "Rehearsal").

* Fast: the rehearsal config validates merged over config/paper.yaml, builds the paper's whole DAG (every
  arm, merge, table and figure, the judge), and the difference printed in docs/paper-study.md is the one
  the two configs have (config_diff); config_diff itself on a small case.
* Opt-in (``SYNERGY_REHEARSAL=1`` and the Slurm test cluster up): the whole rehearsal through
  ``profiles/slurm`` (partition overrides only); every target exists and ``sacct`` shows every job
  COMPLETED. It takes far longer than CI's budget allows (docs/paper-study.md gives the time).
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from synergy.config.study import config_diff, deep_update, load_config_file

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIGS = [ROOT / "config/config.yaml", ROOT / "config/paper.yaml", ROOT / "config/rehearsal.yaml"]


def _merged(paths):
    data = yaml.safe_load(paths[0].read_text())
    for p in paths[1:]:
        deep_update(data, yaml.safe_load(p.read_text()))
    return data


def test_config_diff_names_every_changed_leaf_and_entries_by_name():
    a = {"x": {"y": 1, "z": [1, 2]}, "arms": [{"name": "a", "k": 1}, {"name": "b", "k": 2}], "keep": 3}
    b = copy.deepcopy(a)
    b["x"]["y"], b["x"]["z"], b["arms"][1]["k"], b["new"] = 2, [3], 5, {"p": "q"}
    assert config_diff(a, b) == ["arms.b.k: 2 -> 5", "new: (unset) -> {p: q}", "x.y: 1 -> 2", "x.z: [1, 2] -> [3]"]
    assert config_diff(a, a) == []


def test_docs_print_the_rehearsals_difference_from_the_paper_config():
    paper, rehearsal = _merged(CONFIGS[:2]), _merged(CONFIGS)
    doc = (ROOT / "docs/paper-study.md").read_text()
    m = re.search(r"<!-- rehearsal-diff -->\n```\n(.*?)\n```\n<!-- /rehearsal-diff -->", doc, re.S)
    assert m, "docs/paper-study.md lost its rehearsal-diff block"
    assert m.group(1).splitlines() == config_diff(paper, rehearsal), \
        "regenerate the block: config_diff(config.yaml + paper.yaml, + rehearsal.yaml)"


def test_rehearsal_keeps_the_paper_dag(tmp_path):
    """Every arm, merge, table, figure and the judge of the paper study; only shard counts change job counts."""
    study = load_config_file(*CONFIGS)
    paper = load_config_file(*CONFIGS[:2])
    assert study.arm_names == paper.arm_names and study.bench_names == paper.bench_names
    for spec in study.benchmarks + study.train_sets:  # a dry run only needs the local copies to exist
        (tmp_path / spec.local_path).mkdir(parents=True, exist_ok=True)
    (tmp_path / "resources/rehearsal/model").mkdir(parents=True, exist_ok=True)
    out = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--quiet", "rules",
                          "--configfile", *map(str, CONFIGS[1:])], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M)}
    arms, benches = len(study.arm_names), len(study.bench_names)
    assert counts["evaluate"] == arms * benches * 2 and counts["gather_eval"] == arms * benches
    assert counts["judge"] == arms * benches and counts["tabulate_judge"] == 1
    assert counts["train_sft"] == 4 and counts["train_grpo"] == 6 and counts["merge_models"] == 9
    assert counts["make_figure"] == 13 and counts["make_report"] == 1 and counts["check_findings"] == 1
    assert "download_dataset" not in counts and "download_model" not in counts  # everything through local_path


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SYNERGY_REHEARSAL") != "1",
                    reason="the whole rehearsal on Slurm takes about an hour on 2 cores: set SYNERGY_REHEARSAL=1")
def test_rehearsal_runs_end_to_end_on_slurm(tmp_path):
    from slurmci import job_env, require_cluster, sacct_jobs

    require_cluster()
    prep = subprocess.run([sys.executable, str(ROOT / "scripts/prepare_rehearsal.py"),
                           str(tmp_path / "resources/rehearsal")], capture_output=True, text=True, env=job_env())
    assert prep.returncode == 0, prep.stderr[-3000:]
    env = {**job_env(), "SYNERGY_SLURM_ACCOUNT": "ci", "SYNERGY_SLURM_PARTITION": "cpu",
           "SYNERGY_SLURM_GPU_PARTITION": "gpu", "SYNERGY_SLURM_GPU_MODEL": "fake"}
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    t0 = time.monotonic()
    run = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--profile",
                          str(ROOT / "profiles/slurm"), "--configfile", *map(str, CONFIGS[1:])],
                         capture_output=True, text=True, env=env, timeout=3 * 3600)
    print(f"\nrehearsal: {time.monotonic() - t0:.0f} s")
    assert run.returncode == 0, run.stderr[-6000:]
    for rel in ["figures/all.pdf", "tables/judge_effect.csv", "tables/table6_synergy.csv", "tables/merge_grid.csv"]:
        assert (tmp_path / "results/paper" / rel).is_file(), rel
    jobs = sacct_jobs(tmp_path, started)
    assert jobs and {j["State"] for j in jobs} == {"COMPLETED"}, [j for j in jobs if j["State"] != "COMPLETED"][:5]


def test_a_grpo_mini_batch_the_jobs_processes_cannot_share_fails_before_any_job():
    """Found by the rehearsal: mini_batch_size 1 with 2 GPUs per train_grpo job failed every GRPO job on the cluster
    once it had started; now the config is refused when the DAG is built, naming the arm."""
    from synergy.config.base import ConfigError
    from synergy.resources import check_process_split

    raw = _merged(CONFIGS)
    check_process_split(raw)  # the rehearsal: 2 processes, mini-batches of 2
    bad = copy.deepcopy(raw)
    bad["grpo"]["mini_batch_size"] = 1
    with pytest.raises(ConfigError, match=r"grpo.mini_batch_size' \(arm 'rl'\): 1 is not a multiple of the 2"):
        check_process_split(bad)
    arm = copy.deepcopy(raw)
    next(a for a in arm["arms"] if a["name"] == "twostage")["settings"]["mini_batch_size"] = 3
    with pytest.raises(ConfigError, match="arm 'twostage'"):
        check_process_split(arm)
    check_process_split(_merged(CONFIGS[:2]))  # the paper: 64 over 8 processes
