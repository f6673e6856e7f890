"""Loaders of the paper's benchmarks and training sets into the canonical schema (paper §2.1-2.4).

``load_set(spec, root)`` reads one config entry (``benchmarks[i]`` or ``train_sets[i]`` as a
mapping) from its dataset directory (``hub.dataset_dir(spec)``). Loader names and options:
``registry.LOADERS``; the reading loop, image resolution and option parsing: ``common``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from synergy.data.loaders.common import LoadResult
from synergy.data.loaders.registry import LOADERS


def load_set(spec: Mapping, root: str | Path, seed: int = 0) -> LoadResult:
    """Canonical rows of the benchmark or training set ``spec`` read from ``root``."""
    info = LOADERS.get(spec["loader"])
    if info is None:
        raise ValueError(f"unknown loader {spec['loader']!r} (known: {sorted(LOADERS)})")
    if info.kind == "benchmark":
        from synergy.data.loaders.benchmarks import load_benchmark

        return load_benchmark(spec, root, seed)
    from synergy.data.loaders.train_sets import load_train_set

    return load_train_set(spec, root, seed)


__all__ = ["LOADERS", "LoadResult", "load_set"]
