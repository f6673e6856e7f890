"""Hub ids -> directories under ``resources/``, and the download behind rules download_dataset / download_model.

Every dataset or model of a study is either a Hugging Face hub id (``source`` / ``path``), fetched
once into ``resources/datasets/<owner>--<name>`` or ``resources/models/<owner>--<name>`` by a
download rule, or a local directory (``local_path``) that replaces the download on clusters
without internet. The directory layout is the repository's own in both cases.

The download uses ``huggingface_hub.snapshot_download`` at run time only (no import at DAG-build
time). Authentication comes from the environment (``HF_TOKEN`` or a cached ``hf auth login``); the
token is never read, passed or logged by this module. With ``HF_HUB_OFFLINE=1`` the files come from
the local hub cache (``HF_HUB_CACHE``), e.g. filled beforehand on a login node.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from synergy.data.loaders.registry import file_patterns

log = logging.getLogger("synergy.data.hub")

DATASETS_DIR = "resources/datasets"
MODELS_DIR = "resources/models"
BENCH_PATH = "results/{study}/data/bench/{bench}.parquet"  # as synergy/workflow/paths.py
SAMPLES_PATH = "results/{study}/difficulty/{bench}.samples.parquet"
MANIFEST = "synergy_download.json"
MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py", "*.md")


def alternatives(names) -> str:
    """A wildcard constraint matching exactly ``names`` (never matching when there are none)."""
    return "|".join(re.escape(n) for n in names) or "^$"


def slug(repo_id: str, revision: str | None = None) -> str:
    """A directory name for a hub id: ``owner/name`` -> ``owner--name`` (``@revision`` appended if pinned)."""
    if not repo_id or repo_id.count("/") != 1 or any(c in repo_id for c in " \\:"):
        raise ValueError(f"{repo_id!r} is not a hub id of the form owner/name")
    return repo_id.replace("/", "--") + (f"@{revision}" if revision else "")


def dataset_dir(spec: Mapping) -> str:
    """Where a benchmark / train set is read from: its ``local_path``, else its download directory."""
    if spec.get("local_path"):
        return str(spec["local_path"])
    return f"{DATASETS_DIR}/{slug(spec['source'], spec.get('revision'))}"


def model_source_dir(entry: Mapping, study: str | None = None) -> str:
    """Where a model (``base_model`` or ``judge``) is read from: its ``local_path``, else its download directory.
    ``{study}`` in a ``local_path`` stands for the study's name (``results/{study}/models/base``: its own base model)."""
    if entry.get("local_path"):
        path = str(entry["local_path"])
        if "{study}" in path and study is None:
            raise ValueError(f"local_path {path!r} names the study's folder ({{study}}) but no study name was given")
        return path.replace("{study}", study) if study is not None else path
    return f"{MODELS_DIR}/{slug(entry['path'], entry.get('revision'))}"


def dataset_downloads(specs: Sequence[Mapping]) -> dict[str, dict]:
    """slug -> {repo_id, revision, allow_patterns} for every non-synthetic set without a local_path.

    Two sets reading one repository share one download; its patterns are the union of theirs.
    """
    out: dict[str, dict] = {}
    for spec in specs:
        if spec.get("loader") == "synthetic" or spec.get("local_path"):
            continue
        key = slug(spec["source"], spec.get("revision"))
        entry = out.setdefault(key, {"repo_id": spec["source"], "revision": spec.get("revision"),
                                     "allow_patterns": ["README.md"]})
        for pat in file_patterns(spec):
            if pat not in entry["allow_patterns"]:
                entry["allow_patterns"].append(pat)
    return out


def model_downloads(entries: Sequence[Mapping]) -> dict[str, dict]:
    """slug -> {repo_id, revision, allow_patterns} for every hub model (``source: hf`` / a judge) without local_path."""
    out = {}
    for e in entries:
        if e and e.get("path") and not e.get("local_path"):
            out[slug(e["path"], e.get("revision"))] = {"repo_id": e["path"], "revision": e.get("revision"),
                                                        "allow_patterns": list(MODEL_FILES)}
    return out


def level_inputs(benchmarks: Sequence[Mapping], study: str) -> dict[str, list[str]]:
    """Inputs of rule assign_levels: the base model's samples (levels: measured) and, for levels: paper,
    the benchmark files whose rows carry the paper's tag in ``meta`` (of study ``study``'s folder)."""
    return {
        "samples": [SAMPLES_PATH.format(study=study, bench=b["name"]) for b in benchmarks if b.get("levels", "measured") == "measured"],
        "tagged": [BENCH_PATH.format(study=study, bench=b["name"]) for b in benchmarks if b.get("levels") == "paper"],
    }


def download(repo_id: str, dest: str | Path, *, repo_type: str, revision: str | None = None,
             allow_patterns: Sequence[str] | None = None) -> dict:
    """Fetch a hub repository (the files matching ``allow_patterns``) into ``dest``; return its manifest.

    Files land in ``dest + '.partial'`` first and the folder is renamed when complete, so an
    interrupted download never looks finished. Offline (``HF_HUB_OFFLINE=1``, or the hub unreachable
    with the files cached), the repository is taken from the local hub cache (``HF_HUB_CACHE``), e.g.
    filled beforehand with ``hf download`` on a login node; files are hard-linked from it when possible.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    patterns = list(allow_patterns) if allow_patterns else None
    log.info("downloading %s %s (revision %s, files %s) into %s", repo_type, repo_id, revision or "main",
             patterns or "all", dest)
    try:
        snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=partial, allow_patterns=patterns)
        commit = _commit(repo_id, repo_type, revision)
        origin = "hub"
    except LocalEntryNotFoundError:
        cached = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns))
        _link_tree(cached, partial, patterns)
        commit, origin = cached.name, f"hub cache {cached}"
    files = sorted(p for p in partial.rglob("*") if p.is_file() and ".cache" not in p.relative_to(partial).parts)
    if not files:
        raise FileNotFoundError(f"{repo_type} {repo_id}: no file matches {patterns}")
    manifest = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision, "commit": commit, "origin": origin,
                "allow_patterns": patterns, "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    shutil.rmtree(partial / ".cache", ignore_errors=True)
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(partial, dest)
    log.info("%s %s from %s: %d files, %.1f MB, commit %s", repo_type, repo_id, origin, manifest["files"],
             manifest["bytes"] / 1e6, commit)
    return manifest


def _commit(repo_id: str, repo_type: str, revision: str | None) -> str | None:
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        return (api.dataset_info if repo_type == "dataset" else api.model_info)(repo_id, revision=revision).sha
    except Exception as exc:  # the files are there; the commit is provenance only
        log.warning("could not read the commit of %s (%s: %s)", repo_id, type(exc).__name__, exc)
        return None


def _link_tree(source: Path, dest: Path, patterns: Sequence[str] | None) -> None:
    """Hard-link (else copy) the files of a cached snapshot that match ``patterns`` into ``dest``."""
    for f in sorted(source.rglob("*")):
        rel = f.relative_to(source).as_posix()
        if not f.is_file() or (patterns and not any(fnmatch.fnmatch(rel, p) for p in patterns)):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f.resolve(), target)
        except OSError:
            shutil.copy2(f.resolve(), target)


def link_model_dir(source: str | Path, dest: str | Path) -> list[str]:
    """Make ``dest`` a directory of symlinks to the files of the HF model folder ``source`` (no copy of weights).

    ``source`` must hold ``config.json`` and safetensors weights; every file (recursively) is linked.
    """
    source, dest = Path(source).resolve(), Path(dest)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} is not a model folder: no config.json (files: "
                                f"{sorted(p.name for p in source.iterdir())[:20] if source.is_dir() else 'none'})")
    if not any(source.glob("*.safetensors")):
        raise FileNotFoundError(f"{source} holds no *.safetensors weights (pickled .bin weights are not loaded)")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    linked = []
    for f in sorted(source.rglob("*")):
        if f.is_file() and ".cache" not in f.relative_to(source).parts:
            target = partial / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
            linked.append(str(f.relative_to(source)))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(partial, dest)
    return linked
