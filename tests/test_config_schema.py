"""One source of truth for the study config: config/schema.yaml and the section dataclasses cannot drift.

For every section, the schema's properties are the dataclass's fields; a property is required exactly
when its field has no default; every JSON type the schema accepts is one the field's annotation
accepts, and the reverse (``None`` may stay out of the schema only where it is the default, i.e. an
absent key); and the schema's ``default`` is the dataclass default (``null`` where the schema admits
null; a nested section's default is its own dataclass defaults). Then: every key the schema knows is
read somewhere in the code (``synergy/`` without its validation, ``scripts/``, ``rules/``, the
Snakefile), so the schema lists nothing the pipeline ignores.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest

from synergy.scorecard.checks import ExternalArm
import yaml

from synergy.config import (
    ArmSpec,
    BaseModelConfig,
    DifficultyConfig,
    EvalConfig,
    GradingConfig,
    GRPOSettings,
    MergingConfig,
    MixingConfig,
    PretrainConfig,
    PromptConfig,
    SamplingSettings,
    SetSpec,
    SFTSettings,
    ShardingConfig,
    TrackingConfig,
    SlerpSettings,
    SyntheticConfig,
    TiesSettings,
    TinyModelSettings,
    VLLMConfig,
    _Section,
)
from synergy.judge import JudgeConfig, JudgeModel
from synergy.findings.settings import FindingRoles, FindingsConfig
from synergy.report.targets import BootstrapSettings, ReportConfig, WordSettings
from synergy.resources import RuleResources

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())

# schema location (a path of keys from the top; "[]" = the items of an array) -> its dataclass
SECTIONS: list[tuple[str, type]] = [
    ("synthetic", SyntheticConfig),
    ("benchmarks[] | train_sets[]", SetSpec),  # one dataclass for both kinds of set: the union of their keys
    ("base_model", BaseModelConfig),
    ("base_model.tiny", TinyModelSettings),
    ("base_model.pretrain", PretrainConfig),
    ("prompt", PromptConfig),
    ("difficulty", DifficultyConfig),
    ("difficulty.sampling", SamplingSettings),
    ("grading", GradingConfig),
    ("sft", SFTSettings),
    ("grpo", GRPOSettings),
    ("evaluation", EvalConfig),
    ("arms[]", ArmSpec),
    ("mixing", MixingConfig),
    ("merging", MergingConfig),
    ("merging.ties", TiesSettings),
    ("merging.slerp", SlerpSettings),
    ("vllm", VLLMConfig),
    ("sharding", ShardingConfig),
    ("tracking", TrackingConfig),
    ("external[]", ExternalArm),
    ("judge", JudgeConfig),
    ("judge.model", JudgeModel),
    ("findings", FindingsConfig),
    ("findings.roles", FindingRoles),
    ("report", ReportConfig),
    ("report.bootstrap", BootstrapSettings),
    ("report.reasoning_words", WordSettings),
    ("resources.*", RuleResources),
]
# fields that are not config keys: the merge grid writes them into the arms it generates
NOT_KEYS = {ArmSpec: {"method", "sft_ratio"}}
# defaults sections: an arm's `settings:` may supply any key, so the schema requires none of them there
# (what is required is checked on the merged settings, synergy.config.resolve_settings)
REQUIRED_ONLY_AFTER_MERGE = {SFTSettings, GRPOSettings}
PY_TO_JSON = {int: {"integer"}, float: {"number"}, bool: {"boolean"}, str: {"string"}, type(None): {"null"}}


def resolve(node: Mapping) -> Mapping:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def at(path: str) -> Mapping:
    node = SCHEMA
    for part in path.split("."):
        if part.endswith("[]"):
            node = resolve(resolve(node)["properties"][part[:-2]])["items"]
        elif part == "*":
            node = resolve(node)["additionalProperties"]
        else:
            node = resolve(node)["properties"][part]
    return resolve(node)


def schema_types(node: Mapping) -> set[str]:
    """The JSON types a schema node accepts (``None`` = anything)."""
    node = resolve(node)
    if "type" in node:
        t = node["type"]
        return set(t) if isinstance(t, list) else {t}
    if "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        out = set()
        for v in values:
            out |= PY_TO_JSON[bool] if isinstance(v, bool) else PY_TO_JSON.get(type(v), {"object"})
        return out
    if "oneOf" in node or "anyOf" in node:
        return set().union(*(schema_types(n) for n in node.get("oneOf", node.get("anyOf"))))
    return set()


def hint_types(hint) -> set[str] | None:
    """The JSON types a field annotation accepts (None = anything: ``Any``)."""
    if hint is typing.Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out = set()
        for arg in typing.get_args(hint):
            sub = hint_types(arg)
            if sub is None:
                return None
            out |= sub
        return out
    if origin in (tuple, list) or hint in (tuple, list):
        return {"array"}
    if origin in (dict, Mapping) or hint in (dict, Mapping) or (isinstance(hint, type) and issubclass(hint, _Section)):
        return {"object"}
    return set(PY_TO_JSON[hint])


def jsonable(value):
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


def section_problems(cls: type, nodes: list[Mapping]) -> list[str]:
    """How a dataclass and its schema node(s) disagree (several nodes: their union must match it)."""
    props: dict[str, Mapping] = {}
    for node in nodes:
        props.update(node.get("properties", {}))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in NOT_KEYS.get(cls, set())}
    out = []
    if set(props) != set(fields):
        out.append(f"keys only in the schema {sorted(set(props) - set(fields))}, "
                   f"only in {cls.__name__} {sorted(set(fields) - set(props))}")
    for node in nodes if cls not in REQUIRED_ONLY_AFTER_MERGE else []:
        required = set(node.get("required", []))
        optional = {n for n, f in fields.items() if f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING}
        for name in sorted((required & optional) | ((set(fields) - optional) & set(node.get("properties", {})) - required)):
            out.append(f"{name}: {'required in the schema but has a default' if name in required else 'no default but optional in the schema'}")
    for name in sorted(set(props) & set(fields)):
        f, node = fields[name], resolve(props[name])
        if "default" in props[name]:  # a default beside a $ref
            node = {**node, "default": props[name]["default"]}
        py, js = hint_types(hints[name]), schema_types(node)
        if py is not None and js:
            accepts_int = {"integer"} if "number" in py else set()
            if not js <= py | accepts_int:
                out.append(f"{name}: the schema accepts {sorted(js - py)}, the annotation {hints[name]} does not")
            missing = py - js - ({"integer"} if "number" in js else set())
            if missing - {"null"} or ("null" in missing and f.default is not None):
                out.append(f"{name}: {hints[name]} accepts {sorted(missing)}, the schema does not")
        if f.default is not dataclasses.MISSING:
            if f.default is None and "null" not in js and js:
                if "default" in node:
                    out.append(f"{name}: default None is an absent key; the schema must not give a default")
            elif "default" not in node:
                out.append(f"{name}: no schema default (the dataclass: {f.default!r})")
            elif node["default"] != jsonable(f.default):
                out.append(f"{name}: schema default {node['default']!r} != dataclass default {f.default!r}")
        elif f.default_factory is not dataclasses.MISSING and "default" in node:
            default = f.default_factory()
            want = {} if isinstance(default, _Section) else jsonable(default)
            if node["default"] != want:
                out.append(f"{name}: schema default {node['default']!r} != {want!r}")
    return out


@pytest.mark.parametrize("path, cls", SECTIONS, ids=[p for p, _ in SECTIONS])
def test_schema_matches_dataclass(path, cls):
    nodes = [at(p.strip()) for p in path.split("|")]
    problems = section_problems(cls, nodes)
    assert not problems, f"config/schema.yaml at {path!r} and {cls.__name__} differ:\n" + "\n".join(problems)


def test_the_comparison_finds_drift():
    @dataclasses.dataclass(frozen=True)
    class Probe(_Section):
        steps: int
        rate: float = 0.5
        mode: str = "a"
        extra: int | None = None

    node = {"type": "object", "required": ["steps", "mode"],
            "properties": {"steps": {"type": "number"}, "rate": {"type": "number", "default": 0.25},
                           "mode": {"enum": ["a", "b"], "default": "a"}, "other": {"type": "string"}}}
    found = "\n".join(section_problems(Probe, [node]))
    for expected in ("only in the schema ['other']", "only in Probe ['extra']", "mode: required in the schema",
                     "steps: the schema accepts ['number']", "rate: schema default 0.25 != dataclass default 0.5"):
        assert expected in found, found


# ------------------------------------------------------------------------ every key is read

CODE = [*sorted((ROOT / "synergy").rglob("*.py")), *sorted((ROOT / "scripts").glob("*.py")),
        *sorted((ROOT / "rules").glob("*.smk")), ROOT / "Snakefile"]
NOT_EVIDENCE = {ROOT / "synergy/config/validation.py"}  # checking a key is not using it


def schema_keys(node: Mapping, path: str = "") -> dict[str, str]:
    """Every key the schema names, as {dotted path: key}."""
    node = resolve(node)
    out = {}
    for key, sub in (node.get("properties") or {}).items():
        out[f"{path}{key}"] = key
        out.update(schema_keys(sub, f"{path}{key}."))
    for part in ("items", "additionalProperties"):
        if isinstance(node.get(part), Mapping):
            out.update(schema_keys(node[part], f"{path}{'[]' if part == 'items' else '*'}."))
    for alt in node.get("oneOf", []):
        out.update(schema_keys(alt, path))
    return out


def code_reads() -> set[str]:
    """What the code reads: attribute names (``cfg.key``), quoted names (``cfg["key"]``, ``.get("key")``), and the
    keyword and parameter names a section's fields reach as ``**settings`` (``resamples=...``)."""
    names = set()
    for path in CODE:
        if path in NOT_EVIDENCE:
            continue
        text = path.read_text()
        if path.suffix != ".py":  # Snakefile, rules/*.smk: not plain Python
            names |= set(re.findall(r"\.([A-Za-z_]\w*)", text))
            names |= set(re.findall(r"""["']([A-Za-z_]\w*)["']""", text))
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return names


def unread(keys: Mapping[str, str], reads: set[str]) -> list[str]:
    return sorted(path for path, key in keys.items() if key not in reads)


def test_every_schema_key_is_read():
    keys = schema_keys(SCHEMA)
    assert len(keys) > 150
    missing = unread(keys, code_reads())
    assert not missing, f"keys of config/schema.yaml that no code reads: {missing}"


def test_the_read_check_finds_an_unread_key():
    assert unread({"grpo.prefix_fade_fraction": "prefix_fade_fraction", "grpo.zzz_unused_key": "zzz_unused_key"},
                  code_reads()) == ["grpo.zzz_unused_key"]
