"""The import graph of synergy/: no cycle, imports point down the layers, the driver-side modules stay light.

Every ``import synergy...`` counts, also one inside a function (a lazy import is a dependency all the
same) or under ``TYPE_CHECKING``. ``from synergy.x import y`` is an edge to ``synergy.x.y`` when that is a
module, else to ``synergy.x``; a package is its ``__init__``. Importing a submodule also runs its
package's ``__init__``, but that implicit edge is not counted (else every package that re-exports its
submodules would be a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "synergy"

# Lowest first; a module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("synergy.rows", "synergy.images", "synergy.io", "synergy.logs", "synergy.progress")),
    ("questions", ("synergy.prompts", "synergy.data", "synergy.grading")),
    ("config", ("synergy.config", "synergy.resources", "synergy.memory_plan", "synergy.scorecard.checks")),
    ("models and generation", ("synergy.models", "synergy.tiny_model", "synergy.generate", "synergy.shards", "synergy.analysis",
                               "synergy.difficulty", "synergy.findings")),
    ("stages", ("synergy.train", "synergy.pretrain", "synergy.vision_pretrain", "synergy.sampling", "synergy.mixing", "synergy.merge", "synergy.routing", "synergy.routing_scores",
                "synergy.judge", "synergy.judge_guard", "synergy.regrade", "synergy.launch")),
    ("workflow", ("synergy.workflow", "synergy.scorecard")),
    ("report", ("synergy.report", "synergy.compare")),
]
# What the Snakemake driver imports when it builds the DAG (Snakefile, rules/*.smk): never torch or transformers.
DRIVER_MODULES = ("synergy.config", "synergy.workflow", "synergy.report.targets", "synergy.resources")
HEAVY = ("torch", "transformers", "vllm", "deepspeed", "accelerate")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(synergy modules, top-level third-party packages) that a file imports anywhere in it."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "synergy" or t.startswith("synergy."):
                while t not in known and "." in t:  # `import synergy.x.Name`-style attribute paths
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    ours.add(t)
            else:
                theirs.add(t.split(".")[0])
    return ours, theirs


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules()
    known = set(mods)
    graph, third = {}, {}
    for name, path in mods.items():
        graph[name], third[name] = imports_of(path, known)
    return graph, third


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> int:
    for k, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return k
    raise KeyError(module)


def test_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_synergy():
    graph, _ = import_graph()
    assert len(graph) > 40
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in synergy/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer():
    unplaced = []
    for m in modules():
        if m == "synergy":
            continue
        try:
            layer_of(m)
        except KeyError:
            unplaced.append(m)
    assert not unplaced, f"modules in no layer of tests/test_imports.py LAYERS: {unplaced}"


def test_imports_point_down_the_layers():
    graph, _ = import_graph()
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in sorted(graph.items()) if m != "synergy"
              for t in sorted(targets) if t != "synergy" and layer_of(t) > layer_of(m)]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_specific_layering_rules():
    graph, third = import_graph()
    assert not {t for t in graph["synergy.prompts"] if t.startswith("synergy.data")}, graph["synergy.prompts"]
    for m, targets in graph.items():
        if m.startswith("synergy.workflow"):
            assert not {t for t in targets if t.startswith("synergy.report")}, (m, targets)
    assert not [m for m, pkgs in third.items() if "snakemake" in pkgs], "synergy/ never imports snakemake"


@pytest.mark.parametrize("root", DRIVER_MODULES)
def test_driver_side_modules_never_import_torch(root):
    """Everything the DAG build reaches from ``root`` (all synergy imports, lazy ones too) is free of torch & co."""
    graph, third = import_graph()
    seen, todo = set(), [m for m in graph if m == root or m.startswith(root + ".")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    heavy = sorted(f"{m}: {sorted(third[m] & set(HEAVY))}" for m in seen if third[m] & set(HEAVY))
    assert not heavy, f"{root} reaches modules that import {HEAVY}: {heavy}"


def test_datasets_is_neither_pinned_nor_imported():
    """docs/ecosystem.md §8: the loaders read the hub snapshot with pyarrow, not Hugging Face `datasets`."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[=<>\[ ]", d)[0].lower() for d in deps}
    assert "datasets" not in names and "datasets==" not in (ROOT / "envs/gpu.yaml").read_text()
    sources = "\n".join(p.read_text() for p in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")])
    assert not re.search(r"^\s*(import datasets|from datasets )", sources, re.M)
