"""Names and options of the dataset loaders, for config validation (stdlib only).

The Snakemake driver validates a study config with this table before any job runs, so a typo in a
loader option fails at DAG-build time with the key's name. The loaders themselves live in
``benchmarks.py`` and ``train_sets.py``; ``tests/test_loaders.py`` checks that both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LoaderInfo:
    """What one loader reads and which config keys it takes."""

    kind: str                            # "benchmark" or "train"
    default_split: str
    files: tuple[str, ...]               # globs under the dataset directory ("{split}" filled in); pathlib
                                         # and huggingface_hub (fnmatch) read them: list root and "**/" forms
    hub_id: str                          # the dataset the paper used (docs/paper.md §2, §6; docs/ecosystem.md §8)
    options: frozenset[str] = frozenset()  # loader-specific keys besides the common ones


COMMON_KEYS = frozenset({"name", "loader", "source", "local_path", "revision", "split", "files", "where",
                         "num_questions", "on_bad_row"})
BENCHMARK_KEYS = frozenset({"levels", "level_column", "level_format"})
TRAIN_KEYS = frozenset({"style", "modality"})

LOADERS: dict[str, LoaderInfo] = {
    # benchmarks (paper §2.4)
    "mathvision": LoaderInfo("benchmark", "test", ("data/{split}-*.parquet",), "MathLLMs/MathVision"),
    "mathverse": LoaderInfo("benchmark", "testmini", ("{split}.parquet",), "AI4Math/MathVerse"),
    "mathvista": LoaderInfo("benchmark", "testmini", ("data/{split}-*.parquet",), "AI4Math/MathVista"),
    "mmmu": LoaderInfo("benchmark", "validation", ("*/{split}-*.parquet",), "MMMU/MMMU", frozenset({"subsets"})),
    "mmstar": LoaderInfo("benchmark", "val", ("mmstar.parquet",), "Lin-Chen/MMStar"),
    # training sets (paper §2.1-2.2)
    "s1k": LoaderInfo("train", "train", ("data/{split}-*.parquet",), "simplescaling/s1K", frozenset({"trace"})),
    "eureka_distill": LoaderInfo("train", "train",
                                 ("*{split}*.parquet", "*{split}*.json", "*{split}*.jsonl", "**/*{split}*.parquet",
                                  "**/*{split}*.json", "**/*{split}*.jsonl"),
                                 "JierunChen/Eureka-Distill", frozenset({"columns"})),
}
LEVEL_SOURCES = ("measured", "paper")
LEVEL_FORMATS = ("level", "passes")
TRACES = ("gemini", "deepseek")


def loader_errors(section: str, index: int, spec: Mapping) -> list[str]:
    """Config errors of one benchmark / train-set entry whose loader is not ``synthetic``."""
    where = f"{section}[{index}]"
    name = spec.get("loader")
    info = LOADERS.get(name)
    if info is None:
        return [f"config key '{where}.loader': unknown loader {name!r} (known: synthetic, {', '.join(LOADERS)})"]
    kind = "benchmark" if section == "benchmarks" else "train"
    if info.kind != kind:
        return [f"config key '{where}.loader': {name!r} loads a {info.kind} set, not a {kind} set"]
    allowed = COMMON_KEYS | info.options | (BENCHMARK_KEYS if kind == "benchmark" else TRAIN_KEYS)
    errors = [f"config key '{where}.{k}' does not apply to loader {name!r} (keys it takes: {sorted(allowed)})"
              for k in sorted(set(spec) - allowed)]
    if not spec.get("source") and not spec.get("local_path"):
        errors.append(f"missing required config key '{where}.source' (a hub id) or '{where}.local_path' "
                      f"(a directory) for loader {name!r}")
    if spec.get("levels", "measured") == "paper" and not spec.get("level_column"):
        errors.append(f"missing required config key '{where}.level_column' for levels: paper (the column of the "
                      f"paper's difficulty tag; the loader lists the columns present if it is wrong)")
    if kind == "train" and spec.get("style", "none") not in ("none", "trace"):
        errors.append(f"config key '{where}.style': loader {name!r} gives style none (queries only) or trace "
                      f"(the dataset's own responses), not {spec.get('style')!r}")
    if name == "s1k" and spec.get("style", "none") != "none" and spec.get("trace") not in TRACES:
        errors.append(f"config key '{where}.trace': s1k traces need trace: gemini or deepseek, got {spec.get('trace')!r}")
    if name == "s1k" and spec.get("modality", "text") != "text":
        errors.append(f"config key '{where}.modality': s1K is a text set (modality: text)")
    return errors


def split_of(spec: Mapping) -> str:
    return spec.get("split") or LOADERS[spec["loader"]].default_split


def file_patterns(spec: Mapping) -> list[str]:
    """The globs selecting the spec's data files under its dataset directory."""
    files = spec.get("files") or LOADERS[spec["loader"]].files
    if spec["loader"] == "mmmu" and spec.get("subsets") and not spec.get("files"):
        return [f"{s}/{split_of(spec)}-*.parquet" for s in spec["subsets"]]
    return [f.replace("{split}", split_of(spec)) for f in files]


REAL_ONLY_KEYS = (COMMON_KEYS | BENCHMARK_KEYS | {"subsets", "columns", "trace"}) - {"name", "loader", "num_questions",
                                                                                        "levels"}


def synthetic_errors(section: str, index: int, spec: Mapping) -> list[str]:
    """Config errors of a ``loader: synthetic`` entry that uses a real loader's keys."""
    where = f"{section}[{index}]"
    errors = [f"config key '{where}.{k}' applies to real datasets, not to loader synthetic"
              for k in sorted(REAL_ONLY_KEYS & set(spec)) if spec[k] is not None]
    if spec.get("levels", "measured") != "measured":
        errors.append(f"config key '{where}.levels': a synthetic benchmark has no paper levels (use measured)")
    if spec.get("style") == "trace":
        errors.append(f"config key '{where}.style': style trace is for real datasets; synthetic traces are "
                      f"verbose, reflective or reflective_short")
    return errors
