"""The machinery of the config sections: ``_Section.from_dict`` builds a frozen dataclass, naming bad keys."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

LEVELS = ("L1", "L2", "L3", "L4", "L5")


class ConfigError(ValueError):
    """A study config is invalid; the message names the key."""


GENERATION_BACKENDS = ("hf", "vllm")  # synergy.generate.BACKENDS (not imported: this module stays torch-free)


def _check_backend(key: str, value: str) -> None:
    if value not in GENERATION_BACKENDS:
        raise ConfigError(f"config key {key!r} must be one of {list(GENERATION_BACKENDS)}, got {value!r}")


class _Section:
    """Mixin: build a frozen dataclass from a plain mapping, naming unknown or missing keys."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = ""):
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ConfigError(f"config section {where!r} must be a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            from synergy.config.overrides import suggest

            raise ConfigError(f"unknown config key {where + '.' + unknown[0]!r}" + suggest(unknown[0], fields))
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING]
            if missing:
                raise ConfigError(f"missing required config key {where + '.' + missing[0]!r}") from exc
            raise

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _convert(hint, value, where: str):
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, _Section):
        return hint.from_dict(value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and issubclass(arg, _Section) and isinstance(value, Mapping):
                return arg.from_dict(value, where)
    return value
