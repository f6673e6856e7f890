"""evaluation.per_job: one evaluate job per arm (all benchmarks) or per (arm, benchmark); same results either way."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from tiny_study import forget_settings, job_counts, tiny_study

from synergy.config import ConfigError, load_config_file

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def test_per_benchmark_jobs_on_request(tmp_path):
    (tmp_path / "b.yaml").write_text("evaluation: {per_job: benchmark}\n")
    per_arm, per_bench = job_counts(tmp_path), job_counts(tmp_path, "--configfile", str(tmp_path / "b.yaml"))
    assert per_arm["evaluate"] == 20 and per_bench["evaluate"] == 20 * 5
    assert {k: v for k, v in per_arm.items() if k != "evaluate"} == {k: v for k, v in per_bench.items() if k != "evaluate"}


def test_per_arm_jobs_cannot_shard(tmp_path):
    (tmp_path / "s.yaml").write_text("sharding: {evaluation: 2}\n")
    with pytest.raises(ConfigError, match="per_job: arm.*sharding.evaluation"):
        load_config_file(ROOT / "config/config.yaml", tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("sharding: {evaluation: 2}\nevaluation: {per_job: benchmark}\n")
    assert load_config_file(ROOT / "config/config.yaml", tmp_path / "s.yaml").sharding.evaluation == 2
    (tmp_path / "s.yaml").write_text("evaluation: {per_job: model}\n")
    with pytest.raises(ConfigError, match="per_job"):
        load_config_file(ROOT / "config/config.yaml", tmp_path / "s.yaml")


BENCHES = {"synth-a": {"count_all": 1, "exists": 1}, "synth-b": {"more_colour": 1, "count_all": 1}}
TINY = tiny_study("perjob", pretrain_rows=32, pretrain_steps=2, curriculum_steps=1, max_new_tokens=(8, 8),
                  benchmarks=[{"name": b, "loader": "synthetic", "num_questions": 5, "templates": t}
                              for b, t in BENCHES.items()])


@pytest.mark.slow
def test_one_job_per_arm_gives_the_per_benchmark_jobs_results(tmp_path):
    """A per-arm job samples each benchmark with the seed its own job would use: the tables are identical."""
    def run(*extra: str, targets=()):
        out = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
                              *(targets or [f"results/perjob/eval/base/{b}.parquet" for b in BENCHES]),
                              "--configfile", str(ROOT / "config/config.yaml"), str(cfg), *extra],
                             capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-5000:]
        return out.stderr

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "evaluation": {**TINY["evaluation"], "per_job": "arm"}}))
    run()
    assert (tmp_path / "logs/perjob/evaluate/base.log").exists()
    per_arm = {b: pl.read_parquet(tmp_path / f"results/perjob/eval/base/{b}.parquet") for b in BENCHES}
    shutil.rmtree(tmp_path / "results/perjob/eval")
    forget_settings(tmp_path, "perjob")  # the same study with per_job changed: updated in place
    cfg.write_text(yaml.safe_dump({**TINY, "evaluation": {**TINY["evaluation"], "per_job": "benchmark"}}))
    log = run()
    assert log.count("rule evaluate:") == len(BENCHES) and "rule build_base_model" not in log
    for b in BENCHES:
        assert (tmp_path / f"logs/perjob/evaluate/base/{b}.log").exists()
        one = pl.read_parquet(tmp_path / f"results/perjob/eval/base/{b}.parquet")
        assert one.height == 5 * 2 and set(one["bench"]) == {b}
        assert one.equals(per_arm[b])
