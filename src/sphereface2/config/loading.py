"""Loading and saving configs: ``key=value`` overrides, dict/YAML file to a checked
TrainConfig and back, and the dotted-key diffs that decide whether a resume is safe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from sphereface2.config.checks import _check_option_values, _check_values, check_names
from sphereface2.config.schema import RESUME_SAFE_KEYS, ConfigError, TrainConfig
from sphereface2.config.typed import _build_dataclass
from sphereface2.config.yaml_text import parse_yaml


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override to the raw (untyped) config dict in place.

    The value is parsed as YAML (``0.05``, ``true``, ``null``, ``[1, 2]``, ``{a: 1}``); list
    items are addressed by index (``data.val.0.path=...``).
    """
    source = f"override {override!r}"
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{source}: expected KEY=VALUE with a dotted KEY, e.g. optim.lr=0.05")
    if text.strip() == "":
        raise ConfigError(f"{source}: empty value (write KEY=null to clear it)")
    value = parse_yaml(text, source)
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where, source)]
        elif isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"{source}: {where}: is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key, source)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{source}: {'.'.join(parts[:-1])}: is a value, not a section")


def _list_index(node: list, part: str, where: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{source}: {where}: expected a list index below {len(node)}")
    return int(part)


def config_from_dict(
    raw: Any, source: str = "<config>", overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Validate a plain dict (e.g. parsed YAML, or a checkpoint's config) into a TrainConfig.

    ``overrides`` (``key=value`` strings) are applied first; errors name ``source``, or the
    override itself when the bad value came from one.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    raw = _copy_plain(raw)
    overridden = set()
    for override in overrides:
        apply_override(raw, override)
        overridden.add(override.partition("=")[0].strip())
    try:
        cfg = _build_dataclass(TrainConfig, raw, "", source)
        _check_values(cfg, source)
        check_names(cfg, source)
        _check_option_values(cfg, source)
    except ConfigError as err:
        message = str(err)
        for key in overridden:  # say where a bad value came from
            if f": {key}:" in message or f": {key}." in message:
                message = f"{message} (set by the override {key}=...)"
        raise ConfigError(message) from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Load and validate a YAML training config, then apply ``key=value`` overrides."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config file: {err}") from None
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}: not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
            "save the config as UTF-8"
        ) from None
    return config_from_dict(parse_yaml(text, source), source, overrides)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""
    return _copy_plain(dataclasses.asdict(cfg))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the effective config as YAML; ``load_config`` reads it back to an equal config."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"dotted.key": leaf}; lists are leaves (compared as a whole)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        if not data and prefix:
            out[prefix] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def config_diff(a: TrainConfig | dict[str, Any], b: TrainConfig | dict[str, Any]) -> list[str]:
    """Sorted dotted keys whose values differ between two configs (or their dicts)."""
    flat_a = flatten(config_to_dict(a) if isinstance(a, TrainConfig) else _copy_plain(a))
    flat_b = flatten(config_to_dict(b) if isinstance(b, TrainConfig) else _copy_plain(b))
    keys = set(flat_a) | set(flat_b)
    missing = object()
    return sorted(k for k in keys if flat_a.get(k, missing) != flat_b.get(k, missing))


def resume_blocking_diff(a: TrainConfig, b: TrainConfig) -> list[str]:
    """The differing keys that make resuming a checkpoint of ``a`` with ``b`` unsafe."""
    return [
        key
        for key in config_diff(a, b)
        if not any(key == safe or key.startswith(safe + ".") for safe in RESUME_SAFE_KEYS)
    ]


def _copy_plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy_plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_copy_plain(v) for v in data]
    return data
