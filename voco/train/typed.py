"""Typed dataclasses from mappings (YAML): keys and simple types checked, errors naming the dotted key.

    build(StageSpec, {"name": "read", "steps": 80, ...}, "stages[0]")

Used by the training config (`voco.train.config`) and the readers' options (`voco.train.readers`), so neither
imports the other for it.
"""

from __future__ import annotations

import dataclasses
import types
import typing


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the offending key."""


def build(cls, data, where: str):
    """Build dataclass `cls` from a mapping, checking keys and simple types; errors name the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    moved = cls.moved_keys(data) if hasattr(cls, "moved_keys") else ""
    if moved:
        raise ConfigError(moved)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hint = cls.unknown_keys_hint(unknown) if hasattr(cls, "unknown_keys_hint") else ""
        raise ConfigError(f"{where or 'config'}: unknown keys {unknown}; known: {sorted(fields)}{hint}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing required keys {missing}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(hints[name], value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def _convert(hint, value, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, key) for a, v in zip(args, value, strict=True))
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value
