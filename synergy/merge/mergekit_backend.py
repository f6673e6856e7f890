"""MergeKit as a merge backend (paper §3.3: the paper merged with MergeKit): ``merging.backend: mergekit``.

MergeKit (Arcee, LGPL-3.0) is imported, never copied, and is not a dependency of this package: it
is installed in its own environment (envs/mergekit.yaml, or ``pip install mergekit==0.1.5`` into a
separate venv; docs/merging.md §2). The merge runs in a child process of that environment's
Python: ``SYNERGY_MERGEKIT_PYTHON`` (path of its interpreter) or, when unset, this interpreter,
which then must import ``mergekit``. The child reads a MergeKit YAML config written from the
``MergeSettings`` and calls ``mergekit.merge.run_merge``:

* linear: ``merge_method: linear``, weights ``(1 - t, t)`` on (RL, SFT);
* slerp: ``merge_method: slerp``, ``base_model`` = the RL parent, ``t`` = the SFT ratio (MergeKit's
  own dot threshold, 0.9995, the same as ours);
* ties: ``merge_method: ties``, ``base_model`` = the base, weights ``(1 - t, t)``, ``density``,
  ``normalize: true``, ``lambda`` = ``scale``. MergeKit keeps exactly ``max(1, int(density * n))``
  entries per task vector (ties at the threshold broken by sort order), ours every entry that
  reaches the ``round(density * n)``-th largest magnitude; MergeKit elects + where the weighted sum
  is exactly 0, ours no sign (docs/merging.md §3): the few entries these tie rules decide can differ.

The output dtype is the RL parent's; the endpoints (ratio 0 / 1) are copied from the parent as in
the native engine. The result is assembled under a hidden temporary folder and renamed, with a
``merge_summary.json`` as the native engine writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from synergy.io import share_tree
from synergy.merge.engine import INDEX_NAME, merge_models as merge_native
from synergy.merge.methods import MergeSettings
from synergy.merge.safetensors_io import MergeError, SafetensorsReader

ENV_PYTHON = "SYNERGY_MERGEKIT_PYTHON"
_DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def mergekit_python() -> str:
    """The interpreter that runs MergeKit: ``$SYNERGY_MERGEKIT_PYTHON`` or this one."""
    return os.environ.get(ENV_PYTHON) or sys.executable


_AVAILABLE: dict[str, str | None] = {}


def mergekit_available() -> str | None:
    """None when MergeKit can be run, else why not (one line); asked once per interpreter."""
    py = mergekit_python()
    if py not in _AVAILABLE:
        _AVAILABLE[py] = _probe(py)
    return _AVAILABLE[py]


def _probe(py: str) -> str | None:
    try:
        proc = subprocess.run([py, "-c", "import mergekit.merge"], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return f"{ENV_PYTHON}={py} cannot be run ({exc})"
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"mergekit is not importable by {py} ({last}); install it in its own environment (envs/mergekit.yaml) " \
               f"and set {ENV_PYTHON} to that environment's python"
    return None


def _dtype_of(model_dir: Path) -> str:
    index = model_dir / INDEX_NAME
    first = json.loads(index.read_text())["weight_map"] if index.exists() else None
    f = model_dir / (sorted(set(first.values()))[0] if first else "model.safetensors")
    reader = SafetensorsReader(f)
    floats = [e["dtype"] for e in reader.entries.values() if e["dtype"] in _DTYPE_NAMES]
    return _DTYPE_NAMES[max(set(floats), key=floats.count)] if floats else "float32"


def mergekit_config(rl_dir, sft_dir, settings: MergeSettings, base_dir=None) -> dict:
    """The MergeKit YAML config (as a dict) of one merge."""
    t, rl, sft = settings.sft_ratio, str(rl_dir), str(sft_dir)
    cfg: dict = {"dtype": "float32", "out_dtype": _dtype_of(Path(rl_dir))}  # float32 arithmetic, as the native engine
    if settings.method == "linear":
        cfg.update(merge_method="linear", models=[{"model": rl, "parameters": {"weight": 1.0 - t}},
                                                  {"model": sft, "parameters": {"weight": t}}])
    elif settings.method == "slerp":
        cfg.update(merge_method="slerp", base_model=rl, models=[{"model": rl}, {"model": sft}], parameters={"t": t})
    else:
        if base_dir is None:
            raise MergeError("ties needs base_dir (the model both parents started from)")
        cfg.update(merge_method="ties", base_model=str(base_dir),
                   models=[{"model": rl, "parameters": {"weight": 1.0 - t, "density": settings.density}},
                           {"model": sft, "parameters": {"weight": t, "density": settings.density}}],
                   parameters={"normalize": True, "lambda": settings.scale})
    return cfg


def merge_with_mergekit(rl_dir, sft_dir, out_dir, settings: MergeSettings, base_dir=None, threads: int | None = None,
                        **_ignored) -> dict:
    """Merge with MergeKit in a child process; returns the summary (also ``merge_summary.json``)."""
    if settings.sft_ratio in (0.0, 1.0):  # the parent itself, as the native engine returns it
        return merge_native(rl_dir, sft_dir, out_dir, settings, base_dir=base_dir)
    why = mergekit_available()
    if why:
        raise MergeError(f"merging.backend: mergekit: {why}")
    t0 = time.monotonic()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.mergekit.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cfg = mergekit_config(rl_dir, sft_dir, settings, base_dir)
    (tmp.parent / f".{out_dir.name}.mergekit.json").write_text(json.dumps(cfg))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    proc = subprocess.run([mergekit_python(), "-m", "synergy.merge.mergekit_backend",
                           str(tmp.parent / f".{out_dir.name}.mergekit.json"), str(tmp / "model"), str(threads or 0)],
                          capture_output=True, text=True, env=env)
    (tmp.parent / f".{out_dir.name}.mergekit.json").unlink(missing_ok=True)
    if proc.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MergeError(f"mergekit failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    merged = tmp / "model"
    for p in Path(rl_dir).iterdir():  # the RL parent's config, tokenizer, processor files win, as in the native engine
        if p.is_file() and not p.name.endswith(".safetensors") and p.name != INDEX_NAME:
            shutil.copy2(p, merged / p.name)
    summary = {"method": settings.method, "sft_ratio": settings.sft_ratio, "rl_parent": str(rl_dir),
               "sft_parent": str(sft_dir), "base": str(base_dir) if base_dir and settings.method == "ties" else None,
               "density": settings.density if settings.method == "ties" else None,
               "scale": settings.scale if settings.method == "ties" else None, "backend": "mergekit",
               "mergekit_config": cfg, "seconds": round(time.monotonic() - t0, 3)}
    (merged / "merge_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    share_tree(merged)  # the modes of new files under the umask (synergy/io.py)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    merged.rename(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _child(config_path: str, out_path: str, threads: int) -> None:
    """In MergeKit's environment: run the merge described by ``config_path`` into ``out_path``."""
    import torch
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    if threads:
        torch.set_num_threads(threads)
    config = MergeConfiguration.model_validate(json.loads(Path(config_path).read_text()))
    run_merge(config, out_path, MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True,
                                             lazy_unpickle=False, allow_crimes=True))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
