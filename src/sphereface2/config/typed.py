"""Plain data to the typed dataclasses: each value is checked against its field's annotation,
and a mismatch raises a ConfigError naming the source and the dotted key path."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from sphereface2.config.schema import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} {_type_name(args[0])}s"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _fail(source: str, path: str, message: str) -> typing.NoReturn:
    where = f"{path}: " if path else ""
    raise ConfigError(f"{source}: {where}{message}")


def _convert(value: Any, tp: Any, path: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in the typed form."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, path, source)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path, source)
            except ConfigError:
                continue
        _fail(source, path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool):
            _fail(source, path, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            _fail(source, path, f"expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            _fail(source, path, f"expected {_type_name(tp)}, got {value!r}")
        return tuple(
            _convert(v, a, f"{path}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))
        )
    if origin is dict:
        if not isinstance(value, dict):
            _fail(source, path, f"expected a mapping, got {value!r}")
        for key in value:
            if not isinstance(key, str):
                _fail(source, path, f"keys must be strings, got {key!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, path, f"expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, path, f"expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(source, path, f"expected float, got {value!r}")
        if not math.isfinite(value):
            _fail(source, path, f"expected a finite float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, path, f"expected str, got {value!r}")
        return value
    raise TypeError(f"config field {path} has an unsupported annotation {tp!r}")  # a schema bug


def _build_dataclass(cls: type, raw: Any, path: str, source: str) -> Any:
    if not isinstance(raw, dict):
        _fail(source, path, f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    unknown = [k for k in raw if k not in fields]
    if unknown:
        valid = ", ".join(fields)
        _fail(source, f"{prefix}{unknown[0]}", f"unknown key; valid keys here: {valid}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], key, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(source, key, "missing required key")
    return cls(**kwargs)
