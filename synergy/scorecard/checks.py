"""Checks of an outside checkpoint before any job runs (docs/scorecard.md §2): the scorecard's first stage.

Not a paper section: the paper evaluates only its own arms. An ``external`` entry names a checkpoint this
pipeline did not train, by a local Hugging Face folder (``path``) or a hub id (``hub`` + ``revision``), with an
optional prompt setting (``reasoning_instruction``) and ``trust_remote_code``. ``check_external`` reads only the
folder's JSON files (never torch or transformers, so it runs when Snakemake builds the DAG) and raises
``ExternalError`` naming the entry and the problem:

* a folder that does not exist, or has no ``config.json``;
* a folder that is not a vision-language model: its config has no ``vision_config``, or its architectures
  name no image-to-text class (``...ForConditionalGeneration``, ``...ImageTextToText``, ``...Vision2Seq``);
* a processor that does not match the model: no processor file, no image processor in it, a patch size other
  than the vision tower's, or an ``image_token_id`` the tokenizer does not have;
* a hub id while offline (``HF_HUB_OFFLINE=1``) that is not in the local hub cache;
* code of its own (``auto_map`` in ``config.json``, for a model type transformers does not ship) without
  ``trust_remote_code: true``.

``check_externals`` runs every entry's checks when Snakemake builds the DAG (rules/common.smk), so a bad entry
stops the run before any job; an entry's name must not be a study arm's, and ``seeds_of`` (evaluate with the
sampling seeds of that study arm) must name one. The workflow side (the evaluation jobs, the scorecard rule) is
synergy/workflow/external.py and rules/scorecard.smk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

IMAGE_TEXT_CLASSES = re.compile(r"(ForConditionalGeneration|ImageTextToText|Vision2Seq)$")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


class ExternalError(ValueError):
    """An external checkpoint that cannot be evaluated; the message names the entry and what is wrong."""


@dataclass(frozen=True)
class ExternalArm:
    name: str
    path: str | None = None               # a local Hugging Face model folder
    hub: str | None = None                # or a hub id, at ``revision``
    revision: str | None = None
    reasoning_instruction: bool | None = None  # None: as the study's trained arms (the instruction on)
    trust_remote_code: bool = False
    seeds_of: str | None = None           # sample with this study arm's evaluation seeds (None: the entry's own)

    @classmethod
    def from_dict(cls, raw: Mapping) -> "ExternalArm":
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ExternalError(f"external arm {raw.get('name')!r}: unknown keys {unknown} "
                                f"(known: {sorted(cls.__dataclass_fields__)})")
        if not raw.get("name"):
            raise ExternalError(f"an external arm needs a name: {dict(raw)}")
        arm = cls(**raw)
        if (arm.path is None) == (arm.hub is None):
            raise ExternalError(f"external arm {arm.name!r}: give exactly one of 'path' (a local folder) and "
                                f"'hub' (a hub id, with 'revision')")
        return arm


def _json(path: Path, arm: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExternalError(f"external arm {arm!r}: cannot read {path}: {e}") from None


def hub_cache_folder(repo: str, revision: str | None) -> Path | None:
    """The local hub cache's snapshot of ``repo`` at ``revision`` (None when it is not there)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, "config.json", revision=revision)
    return Path(hit).parent if isinstance(hit, str) else None


def check_external(raw: Mapping, *, env: Mapping[str, str] | None = None,
                   cache: Callable[[str, str | None], Path | None] = hub_cache_folder) -> Path | None:
    """Check one ``external`` entry; return the folder it will be read from (None: a hub id to download first)."""
    arm = ExternalArm.from_dict(raw)
    env = os.environ if env is None else env
    if arm.hub is not None:
        folder = cache(arm.hub, arm.revision)
        if folder is None:
            if env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
                raise ExternalError(
                    f"external arm {arm.name!r}: hub id {arm.hub!r} (revision {arm.revision or 'main'}) cannot be "
                    f"fetched: HF_HUB_OFFLINE=1 and it is not in the local hub cache; download it first "
                    f"(`hf download {arm.hub}" + (f" --revision {arm.revision}" if arm.revision else "") +
                    "`) or give a local folder as 'path'")
            return None  # the download job fetches it; its folder is checked then
    else:
        folder = Path(arm.path)
        if not folder.is_dir():
            raise ExternalError(f"external arm {arm.name!r}: folder {folder} does not exist")
    check_folder(folder, arm)
    return folder


def check_folder(folder: Path, arm: ExternalArm) -> None:
    """The checks of a local model folder (module docstring)."""
    if not (folder / "config.json").is_file():
        raise ExternalError(f"external arm {arm.name!r}: {folder} is not a Hugging Face model folder (no config.json)")
    config = _json(folder / "config.json", arm.name)
    archs = list(config.get("architectures") or [])
    if "vision_config" not in config or not any(IMAGE_TEXT_CLASSES.search(a) for a in archs):
        raise ExternalError(
            f"external arm {arm.name!r}: {folder} is not a vision-language model (model_type "
            f"{config.get('model_type')!r}, architectures {archs}; a scorecard needs a vision tower, vision_config, "
            f"and an image-text-to-text class)")
    if config.get("auto_map") and not arm.trust_remote_code:
        raise ExternalError(
            f"external arm {arm.name!r}: {folder} ships code of its own (auto_map in config.json: "
            f"{sorted(config['auto_map'])}); loading it needs trust_remote_code: true on this external arm "
            f"(set it only if you trust that code)")
    found = [folder / f for f in PROCESSOR_FILES if (folder / f).is_file()]
    if not found:
        raise ExternalError(f"external arm {arm.name!r}: {folder} has no processor ({' or '.join(PROCESSOR_FILES)})")
    proc = _json(found[0], arm.name)
    image = proc.get("image_processor", proc)
    if "patch_size" not in image:
        raise ExternalError(f"external arm {arm.name!r}: {found[0]} has no image processor (no patch_size)")
    tower = config["vision_config"].get("patch_size")
    if tower is not None and image["patch_size"] != tower:
        raise ExternalError(f"external arm {arm.name!r}: processor does not match the model: the processor cuts "
                            f"{image['patch_size']} px patches, the vision tower expects {tower} px ({found[0]})")
    token_id = config.get("image_token_id")
    if token_id is not None and (folder / "tokenizer.json").is_file():
        ids = {t["id"] for t in _json(folder / "tokenizer.json", arm.name).get("added_tokens", [])}
        if token_id not in ids:
            raise ExternalError(f"external arm {arm.name!r}: processor does not match the model: the model's "
                                f"image_token_id {token_id} is not a token of its tokenizer ({folder / 'tokenizer.json'})")


def check_externals(config: Mapping, *, arms: Collection[str] | None = None, env: Mapping[str, str] | None = None,
                    seed_arms: Collection[str] | None = None) -> list[Path | None]:
    """Check every entry of the study config's ``external:`` list (module docstring); names must be new.

    ``arms``: every study arm's name (default: the config's ``arms:`` list; the workflow passes the merges too);
    ``seed_arms``: the arms ``seeds_of`` may name, those with an evaluation of their own (default ``arms``).
    """
    entries = config.get("external") or []
    arms = {a.get("name") for a in config.get("arms") or []} if arms is None else set(arms)
    seed_arms = arms if seed_arms is None else set(seed_arms)
    seen: set[str] = set()
    out = []
    for raw in entries:
        name = raw.get("name")
        if name in arms or name in seen:
            raise ExternalError(f"external arm {name!r}: the name is taken by " +
                                ("a study arm" if name in arms else "another external arm") + "; give it another name")
        seen.add(name)
        if raw.get("seeds_of") is not None and raw["seeds_of"] not in seed_arms:
            raise ExternalError(f"external arm {name!r}: seeds_of {raw['seeds_of']!r} is not an evaluated arm of this "
                                f"study (have {sorted(seed_arms)})")
        out.append(check_external(raw, env=env))
    return out
