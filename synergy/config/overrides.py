"""Command-line overrides keep the schema's types, and an unknown key gets a suggestion.

Snakemake reads a nested ``--config`` value with YAML's base loader, so every scalar in it arrives as a string:
``--config 'difficulty={num_samples: 8}'`` gives ``{"num_samples": "8"}``, which the schema (an integer) would
refuse. ``coerce_to_schema`` walks the config along ``config/schema.yaml`` and, where a value is a string, reads
it as YAML (``8`` -> 8, ``true`` -> True, ``null`` -> None, ``0.1`` -> 0.1) and keeps the result only if the schema
accepts it there: a key the schema types as a string stays a string (``study.name: '001'`` stays ``'001'``).
It changes the mapping in place, so the rules that read ``config[...]`` see the same typed values as the
dataclasses. The same applies to a quoted number in a YAML file (``num_samples: "8"``): YAML is read the same way.

``suggest`` names the closest known key ("did you mean") and the keys at that level, for the messages of
unknown config keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, MutableMapping
from typing import Any

import yaml


def _resolve(schema: Mapping, root: Mapping) -> Mapping:
    """Follow a local ``$ref`` (``#/$defs/name``) to the schema it names."""
    seen = 0
    while isinstance(schema, Mapping) and "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"schema reference {ref!r} is not local")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema, seen = node, seen + 1
    return schema


def _alternatives(schema: Mapping, root: Mapping) -> list[Mapping]:
    """The schema and, for ``oneOf`` / ``anyOf``, each alternative (resolved)."""
    schema = _resolve(schema, root)
    alts = [schema]
    for key in ("oneOf", "anyOf"):
        alts += [_resolve(s, root) for s in schema.get(key, [])]
    return alts


def _valid(value: Any, schema: Mapping, root: Mapping) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator({**schema, "$defs": root.get("$defs", {})}).is_valid(value)


def _child_schema(schema: Mapping, root: Mapping, key) -> Mapping | None:
    """The schema of mapping entry ``key`` (``properties``, else ``additionalProperties``), or None."""
    for alt in _alternatives(schema, root):
        if key in alt.get("properties", {}):
            return alt["properties"][key]
    for alt in _alternatives(schema, root):
        extra = alt.get("additionalProperties")
        if isinstance(extra, Mapping):
            return extra
    return None


def _item_schema(schema: Mapping, root: Mapping) -> Mapping | None:
    for alt in _alternatives(schema, root):
        if isinstance(alt.get("items"), Mapping):
            return alt["items"]
    return None


def _coerce(value: Any, schema: Mapping | None, root: Mapping, path: str, changed: list[str]) -> Any:
    if schema is None:
        return value
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
            return value  # YAML 1.1's yes/no/on/off stay strings (and fail validation): only true/false are booleans
        if not isinstance(parsed, str) and _valid(parsed, schema, root):  # else the string is what the schema wants
            changed.append(path)
            return _coerce(parsed, schema, root, path, changed) if isinstance(parsed, (dict, list)) else parsed
        return value
    if isinstance(value, MutableMapping):
        for k in list(value):
            value[k] = _coerce(value[k], _child_schema(schema, root, k), root, f"{path}.{k}" if path else str(k),
                               changed)
        return value
    if isinstance(value, list):
        item = _item_schema(schema, root)
        for i, v in enumerate(value):
            value[i] = _coerce(v, item, root, f"{path}[{i}]", changed)
        return value
    return value


def coerce_to_schema(cfg: MutableMapping, schema: Mapping) -> list[str]:
    """Read the string values of ``cfg`` that the schema wants typed as YAML, in place; return the keys changed."""
    changed: list[str] = []
    _coerce(cfg, schema, schema, "", changed)
    return changed


def suggest(unknown: str, known) -> str:
    """`` (did you mean 'x'?); keys here: a, b, c`` for an unknown key among ``known``."""
    known = sorted(map(str, known))
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; keys here: {', '.join(known)}" if known else hint
