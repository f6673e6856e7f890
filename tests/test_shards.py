"""Sharded generation (synergy/shards.py): shard bounds, the checked gather, the DAG and a real run."""
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from tiny_study import job_counts, tiny_study

from synergy.config import load_config_file
from synergy.shards import ShardError, gather, select_shard, shard_bounds
from synergy.workflow import generation_path, generation_seed, shard_paths

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.mark.parametrize("n, count", [(0, 1), (1, 1), (10, 3), (7, 7), (3, 5), (150, 8), (3040, 8)])
def test_shards_are_contiguous_balanced_and_cover_every_row(n, count):
    bounds = [shard_bounds(n, i, count) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))          # contiguous, no gap, no overlap
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes  # larger shards first
    rows = list(range(n))
    assert sum((select_shard(rows, i, count) for i in range(count)), []) == rows


def test_known_split():
    assert [shard_bounds(10, i, 3) for i in range(3)] == [(0, 4), (4, 7), (7, 10)]


@pytest.mark.parametrize("index, count, match", [(3, 3, "outside"), (-1, 2, "outside"), (0, 0, "at least 1")])
def test_bad_shard_numbers_are_refused(index, count, match):
    with pytest.raises(ShardError, match=match):
        shard_bounds(10, index, count)


def _samples(ids, n=2):
    return pl.DataFrame({"id": [i for i in ids for _ in range(n)], "sample": [k for _ in ids for k in range(n)],
                         "correct": [True, False] * len(ids)})


def test_gather_concatenates_in_shard_order():
    ids = [f"q{i}" for i in range(7)]
    frames = [_samples(select_shard(ids, i, 3)) for i in range(3)]
    out = gather(frames, ids)
    assert out["id"].to_list() == [i for i in ids for _ in range(2)]
    assert out.equals(pl.concat(frames))


def test_gather_refuses_a_missing_a_duplicated_and_a_foreign_shard():
    ids = [f"q{i}" for i in range(6)]
    a, b, c = (_samples(select_shard(ids, i, 3)) for i in range(3))
    with pytest.raises(ShardError, match=r"s1: .*missing 1 \(e.g. \['q3'\]\)"):
        gather([a, _samples(["q2"]), c], ids, names=["s0", "s1", "s2"])
    with pytest.raises(ShardError, match=r"s1: question 'q0' is also in s0"):
        gather([a, a, c], ids, names=["s0", "s1", "s2"])
    with pytest.raises(ShardError, match=r"shard 0 of 2 .*another sharding"):  # written with 3 shards, gathered as 2
        gather([pl.concat([a, b]).head(2), c], ids, names=["s0", "s1"])
    with pytest.raises(ShardError, match="different columns"):
        gather([a, b.drop("correct"), c], ids)


def test_paths_and_seeds_follow_the_config():
    one = load_config_file(ROOT / "config/config.yaml")
    assert generation_path(one, "evaluation", "output") == "results/{study}/eval/{arm}/{bench}.parquet"
    paper = load_config_file(ROOT / "config/config.yaml", ROOT / "config/paper.yaml")
    assert generation_path(paper, "difficulty", "output") == "results/{study}/difficulty/shards/{bench}/{shard}.samples.parquet"
    paths = shard_paths(paper, "evaluation", arm="rl", bench="mmstar")
    assert paths == [f"results/paper/eval/shards/rl/mmstar/{i}.parquet" for i in range(paper.sharding.evaluation)]
    seeds = {generation_seed(paper, "difficulty", "mmstar", shard=i) for i in range(paper.sharding.difficulty)}
    assert len(seeds) == paper.sharding.difficulty  # every shard samples with its own seed
    assert generation_seed(one, "difficulty", "mmstar") != generation_seed(one, "evaluation", "mmstar")


def test_a_sharded_study_runs_one_job_per_shard_and_gathers(tmp_path):
    (tmp_path / "shard.yaml").write_text(yaml.safe_dump({"sharding": {"difficulty": 3, "evaluation": 2},
                                                          "evaluation": {"per_job": "benchmark"}}))
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({"evaluation": {"per_job": "benchmark"}}))
    counts = job_counts(tmp_path, "--configfile", str(ROOT / "config/smoke.yaml"), str(tmp_path / "shard.yaml"))
    plain = job_counts(tmp_path, "--configfile", str(ROOT / "config/smoke.yaml"), str(tmp_path / "plain.yaml"))
    assert counts["sample_difficulty"] == 3 * plain["sample_difficulty"]
    assert counts["gather_difficulty"] == plain["sample_difficulty"]
    assert counts["evaluate"] == 2 * plain["evaluate"] and counts["gather_eval"] == plain["evaluate"]
    assert "gather_eval" not in plain and "gather_difficulty" not in plain


# A study small enough to run for real in about a minute (merged over config/config.yaml).
TINY = tiny_study("shards", questions=7, templates={"count_all": 1, "exists": 1}, pretrain_rows=32,
                  pretrain_steps=2, curriculum_steps=1, max_new_tokens=(8, 8),
                  sharding={"difficulty": 3, "evaluation": 2})
TINY["evaluation"]["per_job"] = "benchmark"  # config.yaml's per_job: arm cannot shard


@pytest.mark.slow
def test_sharded_generation_for_real(tmp_path):
    """Three difficulty shards and two evaluation shards of a 7-question benchmark, run and gathered."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    targets = ["results/shards/difficulty/levels.parquet", "results/shards/eval/base/synth-mixed.parquet"]
    run = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "2", *targets,
                          "--configfile", str(ROOT / "config/config.yaml"), str(cfg)],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-5000:]
    bench = pl.read_parquet(tmp_path / "results/shards/data/bench/synth-mixed.parquet")
    samples = pl.read_parquet(tmp_path / "results/shards/difficulty/synth-mixed.samples.parquet")
    assert samples["id"].unique(maintain_order=True).to_list() == bench["id"].to_list()
    assert samples.group_by("id").len()["len"].to_list() == [4] * 7
    shards = [pl.read_parquet(tmp_path / f"results/shards/difficulty/shards/synth-mixed/{i}.samples.parquet") for i in range(3)]
    assert [s["id"].n_unique() for s in shards] == [3, 2, 2]
    assert pl.concat(shards).equals(samples)  # the gather adds and loses nothing
    levels = pl.read_parquet(tmp_path / "results/shards/difficulty/levels.parquet")
    assert levels.height == 7
    ev = pl.read_parquet(tmp_path / "results/shards/eval/base/synth-mixed.parquet")
    assert ev.height == 7 * 2 and set(ev["arm"]) == {"base"}
    logs = {p.relative_to(tmp_path / "logs/shards").as_posix() for p in (tmp_path / "logs/shards").rglob("*.log")}
    assert {f"sample_difficulty/synth-mixed/{i}.log" for i in range(3)} <= logs
    assert {f"evaluate/base/synth-mixed/{i}.log" for i in range(2)} <= logs
    assert "gather_eval/base/synth-mixed.log" in logs
