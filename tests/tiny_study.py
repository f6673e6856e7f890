"""The smallest study the real workflow runs in about a minute (merged over config/config.yaml by Snakemake):
one synthetic benchmark, a short-answer set that pretrains a 1-layer tiny Qwen2.5-VL, difficulty and
evaluation with few short samples. Used by the tests that run Snakemake for real on a fresh directory;
``job_counts`` is their dry run.

Every study writes under ``results/<study.name>/`` and ``logs/<study.name>/`` of the folder it runs in (README
"Path schema"): ``study_files`` / ``study_logs`` name them, ``snakemake_cmd`` / ``run_study`` run a study in a
folder, and ``forget_settings`` removes a study's settings record, the documented way to change a study in place
(synergy/workflow/record.py; without it a run with other settings under the same name is refused)."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

TINY_ARCHITECTURE = {"vocab_size": 384, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                     "intermediate_size": 64, "vision_depth": 1, "vision_hidden_size": 32, "vision_heads": 2,
                     "vision_intermediate_size": 64}


def tiny_study(name: str, *, bench: str = "synth-mixed", questions: int = 8, templates: dict | None = None,
               pretrain_rows: int = 64, pretrain_steps: int = 6, curriculum_steps: int = 2,
               max_new_tokens: tuple[int, int] = (12, 16), **sections) -> dict:
    """The study config as a mapping; ``sections`` add or replace top-level sections (``sft``, ``arms``, ...)."""
    study = {
        "study": {"name": name},
        "compute": {"threads": 1},
        "benchmarks": [{"name": bench, "loader": "synthetic", "num_questions": questions,
                        "templates": templates or {"count_all": 1, "exists": 1, "more_colour": 1}}],
        "train_sets": [{"name": "pretrain", "loader": "synthetic", "num_questions": pretrain_rows, "style": "short",
                        "modality": "image", "reasoning_share": 0.5, "templates": "all"}],
        "base_model": {
            "tiny": copy.deepcopy(TINY_ARCHITECTURE),
            "pretrain": {"curriculum_templates": ["count_all"], "curriculum_steps": curriculum_steps,
                         "steps": pretrain_steps, "batch_size": 4, "warmup_steps": 1,
                         "perception_steps": 2, "perception_batch_size": 4},
        },
        "difficulty": {"num_samples": 4, "thresholds": [4, 3, 2, 1], "sampling": {"max_new_tokens": max_new_tokens[0]}},
        "evaluation": {"num_samples": 2, "sampling": {"max_new_tokens": max_new_tokens[1]}},
        "arms": [{"name": "base", "kind": "base"}],
        "tables": [],
        "merging": None,  # config.yaml's merge grid names arms this study leaves out
    }
    study.update(sections)
    return study


def job_counts(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule of ``snakemake -n --forceall`` on the repository's Snakefile in ``workdir``."""
    out = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", "--forceall", "--quiet",
                          "rules", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M) if k != "total"}


def study_files(workdir: Path, name: str) -> Path:
    """The folder of study ``name``'s results in ``workdir``: ``results/<name>``."""
    return Path(workdir) / "results" / name


def study_logs(workdir: Path, name: str) -> Path:
    """The folder of study ``name``'s job logs in ``workdir``: ``logs/<name>``."""
    return Path(workdir) / "logs" / name


def forget_settings(workdir: Path, name: str) -> None:
    """Remove study ``name``'s settings record (``results/<name>/study.yaml``) so that a run with changed settings
    updates the study in place: Snakemake then re-runs only the jobs whose settings changed."""
    (study_files(workdir, name) / "study.yaml").unlink(missing_ok=True)


def write_config(workdir: Path, study: dict, filename: str | None = None) -> Path:
    """Write a study config mapping (e.g. ``tiny_study(...)``) as YAML into ``workdir``; return its path."""
    path = Path(workdir) / (filename or f"{study['study']['name']}.yaml")
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def snakemake_cmd(workdir: Path, *args: str, configs=(), base: bool = True) -> list[str]:
    """The command that runs the repository's Snakefile in ``workdir``: ``args`` (targets, options) first, then
    ``--configfile`` with config/config.yaml (``base``) and ``configs`` merged over it in order, as Snakemake does."""
    files = [str(ROOT / "config/config.yaml")] if base else []
    files += [str(c) for c in configs]
    return [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args,
            *(["--configfile", *files] if files else [])]


def run_study(workdir: Path, *args: str, configs=(), cores: int = 2, timeout: int = 1800, check: bool = True,
              base: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a study in ``workdir`` for real (``--cores``; ``args`` are targets and options); assert success when
    ``check``. Jobs run single-threaded BLAS unless ``env`` says otherwise."""
    out = subprocess.run(snakemake_cmd(workdir, "--cores", str(cores), *args, configs=configs, base=base),
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if check:
        assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return out
