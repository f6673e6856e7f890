"""Studies side by side: each study's files under results/<study.name>/ and logs/<study.name>/, one set of settings
per name (synergy/workflow/record.py), and synergy.compare on two study folders."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from tiny_study import (ROOT, run_study, snakemake_cmd, study_files, study_logs, tiny_study, write_config)

from synergy.compare import compare, main as compare_main, pooled_gains
from synergy.config import load_config_file
from synergy.workflow import StudyConflict, check_record, record_path, recorded_settings, write_record
from synergy.workflow import final_targets


def _smoke_config() -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    from synergy.config import deep_update
    return deep_update(cfg, yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))


# ------------------------------------------------------------------------------------------ the record


def test_every_shipped_study_has_its_own_folder():
    names = {c: load_config_file(ROOT / "config/config.yaml", *([ROOT / f"config/{c}.yaml"] if c != "config" else []))
             .name for c in ("config", "smoke", "paper")}
    assert len(set(names.values())) == 3, names
    for c, name in names.items():
        study = load_config_file(ROOT / "config/config.yaml", *([ROOT / f"config/{c}.yaml"] if c != "config" else []))
        assert all(t.startswith(f"results/{name}/") for t in final_targets(study)), c


def test_record_refuses_other_settings_and_names_the_way_out(tmp_path):
    cfg = _smoke_config()
    path = write_record(cfg, tmp_path)
    assert path == tmp_path / "results/smoke/study.yaml" and path.is_file()
    assert check_record(cfg, tmp_path) == path  # the same settings pass
    changed = _smoke_config()
    changed["grpo"]["learning_rate"] = 1.0e-3
    changed["study"]["seed"] = 7
    with pytest.raises(StudyConflict) as e:
        check_record(changed, tmp_path)
    msg = str(e.value)
    assert "study 'smoke' already exists" in msg and "2 differ" in msg
    assert "grpo.learning_rate: recorded" in msg and "study.seed: recorded 0, now 7" in msg
    assert "another name" in msg and f"remove {path}" in msg and "Nothing was run" in msg
    write_record(cfg, tmp_path)  # an equal record is left as it is
    assert yaml.safe_load(path.read_text()) == recorded_settings(cfg)


def test_record_leaves_out_what_changes_no_result(tmp_path):
    cfg = _smoke_config()
    write_record(cfg, tmp_path)
    more = _smoke_config()
    more["resources"] = {"default": {"mem_mb": 123456, "runtime": 999}}
    more["tracking"] = {"enabled": True}
    check_record(more, tmp_path)  # no StudyConflict
    assert "resources" not in yaml.safe_load(record_path("smoke", tmp_path).read_text())


def test_an_unreadable_record_is_named(tmp_path):
    path = record_path("smoke", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("study: [unclosed\n")
    with pytest.raises(StudyConflict, match="not readable YAML"):
        check_record(_smoke_config(), tmp_path)


def test_snakemake_refuses_a_second_set_of_settings_before_any_job(tmp_path):
    """A record of study 'smoke' with another seed: the dry run and the real run stop at the DAG, nothing runs."""
    other = _smoke_config()
    other["study"]["seed"] = 3
    write_record(other, tmp_path)
    before = sorted(p for p in tmp_path.rglob("*") if ".snakemake" not in p.parts)
    for extra in (("-n",), ("--cores", "1")):
        out = subprocess.run(snakemake_cmd(tmp_path, *extra, configs=[ROOT / "config/smoke.yaml"], base=False),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode != 0
        text = out.stdout + out.stderr
        assert "study 'smoke' already exists" in text and "study.seed: recorded 3, now 0" in text, text[-3000:]
    assert sorted(p for p in tmp_path.rglob("*") if ".snakemake" not in p.parts) == before


def test_a_study_of_another_name_is_not_refused_and_plans_in_its_own_folder(tmp_path):
    write_record(_smoke_config(), tmp_path)
    cfg = write_config(tmp_path, tiny_study("other"))
    out = subprocess.run(snakemake_cmd(tmp_path, "-n", configs=[cfg]), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "results/other/tables/level_counts.csv" in out.stdout and "results/smoke/" not in out.stdout


# ------------------------------------------------------------------------------------------ compare


def _gains(shift: float) -> pl.DataFrame:
    rows = []
    for bench, q in (("b1", 2), ("b2", 6)):
        for level, g in (("L1", -4.0), ("L5", 10.0)):
            rows.append({"arm": "rl", "reference": "base", "bench": bench, "level": level, "questions": q,
                         "accuracy": 50.0, "reference_accuracy": 50.0 - g, "gain": g + (shift if bench == "b2" else 0),
                         "ci_low": g - 1, "ci_high": g + 1})
    rows.append({"arm": "rl", "reference": "base", "bench": "b1", "level": "L3", "questions": 0, "accuracy": None,
                 "reference_accuracy": None, "gain": None, "ci_low": None, "ci_high": None})
    return pl.DataFrame(rows)


def _study(folder: Path, t6: dict, shift: float) -> Path:
    (folder / "tables").mkdir(parents=True)
    pl.DataFrame(t6).write_csv(folder / "tables/table6_synergy.csv")
    _gains(shift).write_csv(folder / "tables/level_gain.csv")
    return folder


def test_compare_puts_table6_and_per_level_gains_side_by_side(tmp_path, capsys):
    a = _study(tmp_path / "results/mine", {"arm": ["rl", "sft"], "b1": [40.0, 30.0], "Avg": [41.0, 31.0]}, 0.0)
    b = _study(tmp_path / "results/paper", {"arm": ["rl", "mixing"], "b1": [42.0, 35.0], "Avg": [43.0, 36.0]}, 4.0)
    out = compare(a, b)
    t6 = out["table6_synergy"]
    assert t6.columns == ["arm", "b1 [mine]", "b1 [paper]", "b1 paper-mine", "Avg [mine]", "Avg [paper]",
                          "Avg paper-mine"]
    assert t6["arm"].to_list() == ["rl", "sft", "mixing"]
    assert t6.row(0) == ("rl", 40.0, 42.0, 2.0, 41.0, 43.0, 2.0)
    assert t6.row(1)[2] is None and t6.row(2)[1] is None  # an arm only one study has
    g = out["level_gain"]
    # pooled over benchmarks, weighted by questions: L1 mine (-4*2 + -4*6)/8 = -4, paper (-4*2 + 0*6)/8 = -1
    row = g.row(0, named=True)
    assert row["L1 [mine]"] == -4.0 and row["L1 [paper]"] == -1.0 and row["L1 paper-mine"] == 3.0
    assert row["L5 [paper]"] == pytest.approx(10.0 + 4.0 * 6 / 8)
    assert "L3 [mine]" not in g.columns  # an empty level has no gain
    assert pooled_gains(_gains(0.0), by_bench=True).height == 2
    assert compare_main([str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "## Table 6" in printed and "| rl | 40.0 | 42.0 | 2.0 |" in printed
    assert pl.read_csv(tmp_path / "cmp/level_gain.csv").height == 1


def test_compare_names_a_missing_table_and_how_to_build_it(tmp_path, capsys):
    a = _study(tmp_path / "results/mine", {"arm": ["rl"], "Avg": [1.0]}, 0.0)
    (tmp_path / "results/none").mkdir()
    assert compare_main([str(a), str(tmp_path / "results/none")]) == 2
    err = capsys.readouterr().err
    assert "table6_synergy.csv does not exist" in err and "snakemake" in err


def test_compare_runs_as_a_module(tmp_path):
    a = _study(tmp_path / "a", {"arm": ["rl"], "Avg": [1.0]}, 0.0)
    b = _study(tmp_path / "b", {"arm": ["rl"], "Avg": [2.0]}, 1.0)
    out = subprocess.run([sys.executable, "-m", "synergy.compare", str(a), str(b)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "| rl | 1.0 | 2.0 | 1.0 |" in out.stdout


# ------------------------------------------------------------------------------------------ two real studies


def _digests(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_second_study_leaves_the_first_byte_identical(tmp_path_factory):
    """The smoke study (the session's one smoke run, copied), then a second small study in the same folder: the
    smoke study's files are byte-identical afterwards and a dry run of either plans nothing."""
    import slurmci

    run = slurmci.smoke_run(tmp_path_factory)
    wd = tmp_path_factory.mktemp("two-studies") / "wd"
    shutil.copytree(run.wd, wd, symlinks=True)  # the smoke run stays as test_e2e reads it
    smoke = [study_files(wd, "smoke"), study_logs(wd, "smoke")]
    before = _digests(*smoke)
    assert len(before) > 100 and (study_files(wd, "smoke") / "study.yaml").is_file()
    second = write_config(wd, tiny_study("second"))
    target = "results/second/tables/level_accuracy.csv"
    run_study(wd, target, configs=[second], timeout=900)
    assert (wd / target).is_file() and (study_files(wd, "second") / "study.yaml").is_file()
    assert (study_logs(wd, "second") / "build_base_model/base.log").is_file()
    assert _digests(*smoke) == before
    for args, configs in (((target, "-n"), [second]), (("-n",), [ROOT / "config/smoke.yaml"])):
        out = subprocess.run(snakemake_cmd(wd, *args, configs=configs), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "Nothing to be done" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    same = compare(study_files(wd, "smoke"), study_files(wd, "smoke"))
    assert same["table6_synergy"].height >= 2
    assert all(v in (0.0, None) for c in same["table6_synergy"].columns if "-" in c
               for v in same["table6_synergy"][c].to_list())
