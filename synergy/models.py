"""Loading and saving of Hugging Face model folders (paper §2.1: every stage starts from a Hub checkpoint).

Every model the pipeline touches lives in one folder in the Hub layout: the weights
(``model.safetensors``, never pickled ``.bin``), ``config.json``, ``generation_config.json`` and the
processor files (tokenizer, chat template, image and video processor settings). ``load_model`` reads
such a folder with ``AutoModelForImageTextToText`` and ``AutoProcessor``, so the tiny CPU model of
the embedded study (synergy/tiny_model.py) goes through *the same loading code* as a Qwen2.5-VL-7B
checkpoint on a GPU node. ``freeze_vision`` freezes the vision tower and the merger (paper §2.1).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch

log = logging.getLogger("synergy.models")


def _vision_module(model):
    """The vision tower (incl. its merger) of a Qwen2/2.5-VL model, wherever transformers keeps it."""
    for path in ("model.visual", "visual", "model.vision_tower", "vision_tower"):
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module):
            return obj
    raise AttributeError(f"no vision tower found on {type(model).__name__}")


def _connector_modules(model, visual) -> list[torch.nn.Module]:
    """Connector modules outside the vision tower (transformers keeps Qwen's merger inside it)."""
    out = []
    for name in ("model.multi_modal_projector", "multi_modal_projector", "model.merger", "merger"):
        obj = model
        for attr in name.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module) and obj is not visual and not any(obj is o for o in out):
            out.append(obj)
    return out


def vision_parameters(model) -> list[torch.nn.Parameter]:
    """Parameters of the vision tower and the vision-language connector (merger)."""
    visual = _vision_module(model)
    params = {id(p): p for p in visual.parameters()}
    for m in _connector_modules(model, visual):
        params.update({id(p): p for p in m.parameters()})
    return list(params.values())


def freeze_vision(model) -> int:
    """Freeze the vision tower and the merger (paper §2.1: ViT and connector frozen).

    Returns the number of frozen parameters (elements).
    """
    visual = _vision_module(model)
    if not hasattr(visual, "merger") and not _connector_modules(model, visual):
        raise AttributeError("vision merger/connector not found; refusing to freeze only part of the vision path")
    visual.requires_grad_(False)
    for m in _connector_modules(model, visual):
        m.requires_grad_(False)
    n = sum(_numel(p) for p in vision_parameters(model))
    log.info("froze %d vision parameters (tower + merger)", n)
    return n


def save_model(model, processor, out_dir: str | Path, extra_files: Mapping[str, str] | None = None,
               state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
    """Save model and processor into one folder (safetensors only), atomically.

    ``state_dict`` (module names -> tensors) replaces the model's own weights in the files (e.g. a
    copy in another dtype); the Hub key names are written as for the model itself.

    Everything is written to a temporary sibling folder which is then renamed into place; an
    existing ``out_dir`` is replaced (moved aside first, deleted after the rename).
    ``extra_files`` (name -> text, e.g. a training summary) are written into the folder before the
    rename, so the folder never appears without them. Running out of space raises ``DiskFull``
    naming the folder and the space needed; the previous folder stays whole.
    """
    from synergy.io import disk_full_guard, folder_bytes, share_tree

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{token}"
    old = out_dir.parent / f".{out_dir.name}.old-{token}"
    needed = folder_bytes(out_dir) or sum(p.numel() * p.element_size() for p in model.parameters()) + 10 * 2**20
    kept = f"The previous {out_dir} is whole." if out_dir.exists() else f"No {out_dir} was written."
    try:
        with disk_full_guard(out_dir.parent, needed, f"the model folder {out_dir.name}", kept,
                             cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
            model.save_pretrained(tmp, state_dict=dict(state_dict) if state_dict is not None else None)
            processor.save_pretrained(tmp)
            for name, text in (extra_files or {}).items():
                if Path(name).name != name:
                    raise ValueError(f"extra file name {name!r} must be a plain file name")
                (tmp / name).write_text(text)
        pickled = sorted(p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        if pickled:
            raise RuntimeError(f"non-safetensors weight files written: {pickled}")
        share_tree(tmp)  # the modes of new files under the umask: a team folder's group can read the weights
        if out_dir.exists():
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if old.exists() and not out_dir.exists():
                os.replace(old, out_dir)  # put the previous version back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU, bfloat16 on CUDA."""
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


TRUST_REMOTE_CODE_ENV = "SYNERGY_TRUST_REMOTE_CODE"
"""Set to "1" / "0" by the workflow (rules/common.smk) from the config's ``base_model.trust_remote_code``."""


def set_job_trust_remote_code(value: bool | None) -> None:
    """A job's own ``trust_remote_code`` (an external arm's, docs/scorecard.md); None keeps the job environment's."""
    if value is not None:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1" if value else "0"


def trust_remote_code_default() -> bool:
    """The workflow's ``base_model.trust_remote_code`` as passed to jobs (``SYNERGY_TRUST_REMOTE_CODE``); False if unset."""
    return os.environ.get(TRUST_REMOTE_CODE_ENV, "0").strip().lower() in ("1", "true")


def load_model(path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool | None = None,
               max_pixels: int | None = None):
    """Load ``(model, processor)`` from a Hub-layout folder (or Hub id) in eval mode.

    ``max_pixels`` (study config ``prompt.max_pixels``) caps each image's pixels in the processor
    (``cap_pixels``), so training, hf rollouts and evaluation resize images alike.

    Uses ``AutoModelForImageTextToText`` and ``AutoProcessor`` with safetensors only (a folder
    with only pickled ``.bin`` weights fails; nothing is unpickled); the dtype defaults to float32
    on CPU and bfloat16 on CUDA. ``trust_remote_code`` (run Python code shipped with the checkpoint)
    defaults to the study config's ``base_model.trust_remote_code``, which the workflow hands to
    every job (``trust_remote_code_default``), and is off unless that turns it on.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if trust_remote_code is None:
        trust_remote_code = trust_remote_code_default()
    log.info("loading %s (safetensors only, trust_remote_code=%s)", path, trust_remote_code)
    dtype = dtype or default_dtype(device)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    _keep_used_weight_conversions(model)
    model.to(device)
    model.eval()
    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    cap_pixels(processor, max_pixels)
    return model, processor


def cap_pixels(processor, max_pixels: int | None) -> None:
    """Set the image processor's pixel bound to ``max_pixels`` (no-op for None; the minimum follows if above it).

    Qwen2-VL's processor resizes every image to at most ``size["longest_edge"]`` pixels (its
    ``max_pixels``; default 12,845,056) and at least ``size["shortest_edge"]``. The same bound goes
    to vLLM's ``mm_processor_kwargs`` (``synergy.generate.vllm.pixel_bounds`` reads it back here).
    """
    if max_pixels is None:
        return
    improc = getattr(processor, "image_processor", None)
    size = getattr(improc, "size", None)
    if improc is None or size is None:
        raise ValueError(f"prompt.max_pixels={max_pixels} is set but the processor {type(processor).__name__} has no "
                         "image processor with a size bound")
    get = size.get if hasattr(size, "get") else (lambda k: getattr(size, k, None))
    lo = get("shortest_edge") or getattr(improc, "min_pixels", None) or 0
    improc.size = {"shortest_edge": int(min(lo, max_pixels)), "longest_edge": int(max_pixels)}
    for attr, value in (("min_pixels", min(lo, max_pixels)), ("max_pixels", max_pixels)):
        if getattr(improc, attr, None) is not None:
            setattr(improc, attr, int(value))


def _keep_used_weight_conversions(model) -> None:
    """Keep only the key renamings that matched the checkpoint, as a normal load does.

    Under DeepSpeed ZeRO-3 transformers 5.23 loads through ``_load_state_dict_into_zero3_model``,
    which attaches *every* renaming of the model type to ``model._weight_conversions``; reverting the
    unused ones on ``save_pretrained`` then writes keys like ``model.model.embed_tokens.weight``.
    """
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if not hasattr(c, "was_used") or c.was_used()]


def _numel(p) -> int:
    """Elements of a parameter; under DeepSpeed ZeRO-3 the full size (``ds_numel``), not the local shard."""
    return int(getattr(p, "ds_numel", p.numel()))


def count_parameters(model) -> dict:
    """Parameter counts (elements): ``total``, ``trainable`` and ``vision`` (tower + merger)."""
    return {
        "total": sum(_numel(p) for p in model.parameters()),
        "trainable": sum(_numel(p) for p in model.parameters() if p.requires_grad),
        "vision": sum(_numel(p) for p in vision_parameters(model)),
    }
