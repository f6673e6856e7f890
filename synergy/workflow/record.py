"""One name, one set of settings: the study record ``results/<study.name>/study.yaml``.

Every study writes under its own folders (``results/<name>/``, ``logs/<name>/``; synergy/workflow/paths.py),
so a second study never touches the first one's files. Two studies with the *same* name and different
settings would mix their files in one folder, so the first real run records the study's settings and a
later run under that name with other settings is refused when the DAG is built, before any job runs.

We refuse rather than put a hash of the settings in the folder name: a folder named by the study is where a
user looks for it (``results/paper/tables/...``), and a changed setting is then a decision the user takes:
a new ``study.name`` (a new folder, everything recomputed), or removing the record to change the study in
place (Snakemake then re-runs only the jobs whose settings changed; every rule gets only the settings it
uses through ``params:``).

Sections that change no result are left out of the record: ``resources:`` (memory, run time, GPUs of the
jobs), ``tracking:`` (where metrics are streamed besides the parquet logs) and ``external:`` (outside
checkpoints to score: each adds its own evaluation and scorecard, and changes no study arm's result).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from synergy.workflow.paths import study_dir

RECORD_NAME = "study.yaml"
NOT_RECORDED = ("resources", "tracking", "external")  # sections that change no result of the study


class StudyConflict(Exception):
    """The settings of a run differ from those recorded for a study of the same name."""


def record_path(name: str, workdir: str | Path = ".") -> Path:
    return Path(workdir) / study_dir(name) / RECORD_NAME


def recorded_settings(config: Mapping[str, Any]) -> dict:
    """The part of a study config that the record keeps: every section but ``NOT_RECORDED``, as plain YAML data."""
    kept = {k: copy.deepcopy(v) for k, v in config.items() if k not in NOT_RECORDED}
    return yaml.safe_load(yaml.safe_dump(kept, sort_keys=True))  # tuples, numpy scalars etc. -> plain YAML data


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (lists compared whole)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key}: not in the record, now {new[k]!r}")
            elif k not in new:
                out.append(f"{key}: recorded {old[k]!r}, now absent")
            else:
                out += _differences(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: recorded {old!r}, now {new!r}"]


def check_record(config: Mapping[str, Any], workdir: str | Path = ".", *, shown: int = 12) -> Path:
    """Raise ``StudyConflict`` when a record of this study's name exists with other settings; return its path."""
    name = config["study"]["name"]
    path = record_path(name, workdir)
    if not path.exists():
        return path
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StudyConflict(f"{path}: the study record is not readable YAML ({e}); remove it to record the "
                            "settings of the next run") from e
    diffs = _differences(old, recorded_settings(config))
    if diffs:
        more = f"\n  ... and {len(diffs) - shown} more" if len(diffs) > shown else ""
        raise StudyConflict(
            f"study {name!r} already exists in {path.parent}/ with other settings ({len(diffs)} differ):\n  "
            + "\n  ".join(diffs[:shown]) + more + "\n"
            f"Nothing was run. To keep both studies, give this one another name (study: {{name: ...}} in its config,"
            f" or --config 'study={{name: {name}-2}}'); its results then go to results/<new name>/. To change study "
            f"{name!r} in place (only the jobs whose settings changed re-run), remove {path} and run again.")
    return path


def write_record(config: Mapping[str, Any], workdir: str | Path = ".") -> Path:
    """Record the study's settings (at the start of a real run; an existing equal record is left as it is)."""
    path = check_record(config, workdir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"# The settings of study {config['study']['name']!r} (synergy/workflow/record.py): a run under this "
                       "name with other settings is refused.\n"
                       + yaml.safe_dump(recorded_settings(config), sort_keys=True))
        tmp.replace(path)
    return path
