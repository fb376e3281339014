"""Typed training configuration: YAML sections map one-to-one onto dataclasses.

    >>> cfg = load_config("configs/demo.yaml", overrides=["optim.lr=0.05"])
    >>> cfg.optim.lr
    0.05

Every YAML key is checked against the dataclass fields: an unknown key, a missing required
key or a value of the wrong type raises :class:`ConfigError` naming the file and the dotted
key path, e.g. ``configs/x.yaml: optim.lr: expected float, got 'abc'``. Command-line
overrides are ``dotted.key=value`` strings whose value is parsed as a YAML scalar (or flow
list/mapping), applied before validation so they are checked the same way.

Names are checked against the registries: the backbone and head names must be registered
and ``model.options`` / ``head.params`` may only hold keyword arguments that the chosen
builder accepts (the registries list the valid names and options). Option *values* are
checked by the builders themselves, called at load time without allocating the model
(:mod:`sphereface2.config_options`), so they too name the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the file (or source) and the key path."""


# --------------------------------------------------------------------------------------
# The schema. Defaults follow the paper's recipe (SphereFace2, Wen et al., ICLR 2022) where
# one exists.
# --------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The backbone: ``build_backbone(backbone, embedding_dim, input_size=..., **options)``.

    ``input_size`` lives here (not under ``data``) because a backbone is built for one input
    size; training and evaluation images are resized to it. ``options`` holds the family's
    other keyword options, e.g. ``batch_norm`` and ``width`` for SFNet, ``dropout`` for both.

    ``init`` (fine-tuning): a file or folder whose backbone weights a fresh run starts
    from: arcface_torch's ``backbone.pth`` (a plain state dict), a sphereface2 checkpoint,
    ``model.pt`` or run folder, or a safetensors export; the head starts fresh. With
    ``init_strict`` (the default) every key and shape must match; ``false`` loads what fits
    and logs what it skipped (a different embedding layer, say). A resumed run ignores
    ``init``: its checkpoint holds every weight (:mod:`sphereface2.train.init_weights`).
    """

    backbone: str
    embedding_dim: int = 512
    input_size: tuple[int, int] = (112, 112)
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_strict: bool = True


@dataclass
class HeadConfig:
    """The loss head: ``build_head(name, num_classes=K, embedding_dim=d, **params)``.

    The trainer builds its class-sharded version (one shard per process; a single process
    holds every class). ``init`` sets how the proxies are drawn: ``full`` draws the whole
    (K, d) Xavier-normal matrix from ``seed`` on every process and keeps its rows (a
    plain head built after ``torch.manual_seed(seed)`` gets the same values, whatever the
    number of processes); ``shard`` draws only this process's rows (same distribution,
    K/world x d memory, but the values depend on the number of processes); ``auto`` is
    ``full`` up to 2^28 proxy entries (1 GiB in float32, about 500K classes at d = 512)
    and ``shard`` beyond.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    init: Literal["auto", "full", "shard"] = "auto"


@dataclass
class LabelNoiseConfig:
    """Relabel each training sample with probability ``p`` (uniform over all classes)."""

    p: float = 0.0
    seed: int = 0


@dataclass
class ValSetConfig:
    """One verification set in InsightFace's .bin format, e.g. ``{name: lfw, path: ...}``."""

    name: str
    path: str


@dataclass
class DataConfig:
    """Training data, validation sets and loading.

    ``batch_size`` is the global batch per optimiser step (all processes, all accumulation
    steps together), so a config means the same recipe on any number of devices.
    """

    train: str
    skip_corrupt: bool = False
    label_noise: LabelNoiseConfig = field(default_factory=LabelNoiseConfig)
    batch_size: int = 512
    num_workers: int = 4
    val: list[ValSetConfig] = field(default_factory=list)
    val_every: int = 2000
    val_batch_size: int = 256


@dataclass
class OptimConfig:
    """SGD with momentum.

    Weight decay: as in the official OpenSphere trainer, by default it applies to *every*
    parameter, backbone and head alike (conv/linear biases, BN/PReLU weights, the class
    proxies and SphereFace2's scalar bias b included). ``no_decay_bias_bn: true`` exempts
    every parameter with fewer than two dimensions (biases, norm-layer and PReLU weights,
    the head's bias), a common modern choice that is not the paper's recipe.
    ``max_grad_norm: null`` disables clipping (the official SphereFace2 VGGFace2 configs
    do not clip; its softmax-family baselines clip at 10, the MS1M config at 100).
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    no_decay_bias_bn: bool = False
    max_grad_norm: float | None = None
    accumulation_steps: int = 1


@dataclass
class ScheduleConfig:
    """Iteration-based learning-rate schedule (one iteration = one optimiser step).

    ``multistep``: lr * gamma^(number of milestones passed). ``cosine``: from lr down to
    ``min_lr`` over the iterations after warm-up. Warm-up (both types) ramps linearly from
    ``warmup_factor * lr`` to the scheduled value over ``warmup_iters`` iterations.
    """

    iterations: int
    type: Literal["multistep", "cosine"] = "multistep"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_iters: int = 0
    warmup_factor: float = 0.1


@dataclass
class RuntimeConfig:
    """Device, precision, logging and checkpointing; none of it changes the recipe's maths
    except ``amp`` and ``channels_last`` (which change rounding only).

    ``checkpoint_every`` / ``keep_last``: a full training checkpoint every N iterations and
    at the end, keeping the newest ``keep_last`` (0 keeps all). ``average_last``: the final
    evaluation weights average the last N checkpoints (the paper averages the last 5,
    1K iterations apart); it must not exceed ``keep_last`` unless that keeps all.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_last: int = 5
    average_last: int = 1
    tensorboard: bool = False


@dataclass
class TrainConfig:
    """A whole training run; the YAML file's top-level sections."""

    model: ModelConfig
    head: HeadConfig
    data: DataConfig
    schedule: ScheduleConfig
    name: str = "run"
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


#: Keys that may differ between a checkpoint's config and the config used to resume it:
#: they change logging, speed or bookkeeping, never the optimisation itself. ``data.train``
#: is allowed (data moves between machines); the trainer instead checks that the dataset's
#: size and number of classes match the checkpoint. ``runtime.device`` is allowed too
#: (resuming a GPU run on another GPU type, say); exactness is promised on one device only.
#: ``data.skip_corrupt`` changes nothing on readable data, so a run stopped by a corrupt
#: record may resume with it on. ``model.init`` is not listed: a resume never reads it,
#: and keeping it fixed keeps the run's config.yaml true about where its weights started.
RESUME_SAFE_KEYS: tuple[str, ...] = (
    "name",
    "data.train",
    "data.skip_corrupt",
    "data.num_workers",
    "data.val",
    "data.val_every",
    "data.val_batch_size",
    "runtime.device",
    "runtime.log_every",
    "runtime.checkpoint_every",
    "runtime.keep_last",
    "runtime.average_last",
    "runtime.tensorboard",
)


# --------------------------------------------------------------------------------------
# YAML parsing
# --------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-4`` and ``1e5`` as floats (PyYAML's YAML 1.1 rules
    need a dot, which makes the common ``weight_decay: 5e-4`` a string)."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None


# --------------------------------------------------------------------------------------
# Dict -> dataclass conversion with key-path errors
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Semantic checks (ranges, cross-field rules, registry names)
# --------------------------------------------------------------------------------------


def _check_values(cfg: TrainConfig, source: str) -> None:
    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            _fail(source, key, message)

    need(cfg.model.embedding_dim >= 1, "model.embedding_dim", "must be >= 1")
    need(all(s >= 1 for s in cfg.model.input_size), "model.input_size", "sizes must be >= 1")
    need(cfg.data.train != "", "data.train", "must be a path")
    need(cfg.model.init != "", "model.init", "must be a path (or null to start from scratch)")
    need(0.0 <= cfg.data.label_noise.p <= 1.0, "data.label_noise.p", "must be in [0, 1]")
    need(cfg.data.batch_size >= 1, "data.batch_size", "must be >= 1")
    need(cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0")
    need(cfg.data.val_every >= 1, "data.val_every", "must be >= 1")
    need(cfg.data.val_batch_size >= 1, "data.val_batch_size", "must be >= 1")
    names = [v.name for v in cfg.data.val]
    need(len(set(names)) == len(names), "data.val", f"names must be unique, got {names}")
    need(cfg.optim.lr > 0, "optim.lr", "must be > 0")
    need(0.0 <= cfg.optim.momentum < 1.0, "optim.momentum", "must be in [0, 1)")
    need(cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(
        not cfg.optim.nesterov or cfg.optim.momentum > 0,
        "optim.nesterov",
        "needs optim.momentum > 0",
    )
    need(
        cfg.optim.max_grad_norm is None or cfg.optim.max_grad_norm > 0,
        "optim.max_grad_norm",
        "must be > 0 (or null for no clipping)",
    )
    steps = cfg.optim.accumulation_steps
    need(steps >= 1, "optim.accumulation_steps", "must be >= 1")
    need(
        cfg.data.batch_size % steps == 0,
        "data.batch_size",
        f"{cfg.data.batch_size} is not divisible by optim.accumulation_steps={steps}",
    )
    sched = cfg.schedule
    need(sched.iterations >= 1, "schedule.iterations", "must be >= 1")
    need(
        list(sched.milestones) == sorted(set(sched.milestones)),
        "schedule.milestones",
        f"must be strictly increasing, got {sched.milestones}",
    )
    need(
        all(0 < m <= sched.iterations for m in sched.milestones),
        "schedule.milestones",
        f"must lie in (0, schedule.iterations={sched.iterations}], got {sched.milestones}",
    )
    need(0 < sched.gamma <= 1, "schedule.gamma", "must be in (0, 1]")
    need(0 <= sched.min_lr <= cfg.optim.lr, "schedule.min_lr", "must be in [0, optim.lr]")
    need(
        0 <= sched.warmup_iters < sched.iterations,
        "schedule.warmup_iters",
        "must be in [0, schedule.iterations)",
    )
    need(0 < sched.warmup_factor <= 1, "schedule.warmup_factor", "must be in (0, 1]")
    rt = cfg.runtime
    need(rt.log_every >= 1, "runtime.log_every", "must be >= 1")
    need(rt.checkpoint_every >= 1, "runtime.checkpoint_every", "must be >= 1")
    need(rt.keep_last >= 0, "runtime.keep_last", "must be >= 0 (0 keeps every checkpoint)")
    need(rt.average_last >= 1, "runtime.average_last", "must be >= 1")
    need(
        rt.keep_last == 0 or rt.average_last <= rt.keep_last,
        "runtime.average_last",
        f"{rt.average_last} exceeds runtime.keep_last={rt.keep_last}: the checkpoints to "
        "average would be deleted",
    )


def check_names(cfg: TrainConfig, source: str = "<config>") -> None:
    """Check the backbone and head names and their option names against the registries."""
    from sphereface2.backbones import BACKBONES  # imported here: the registries fill on import
    from sphereface2.heads import HEADS

    try:
        BACKBONES.get(cfg.model.backbone)
    except KeyError as err:
        _fail(source, "model.backbone", str(err))
    reserved = ("embedding_dim", "input_size")
    for key in reserved:
        if key in cfg.model.options:
            _fail(source, f"model.options.{key}", f"set it as model.{key}, not in options")
    valid = BACKBONES.options(cfg.model.backbone, exclude=reserved)
    for key in cfg.model.options:
        if key not in valid:
            _fail(
                source,
                f"model.options.{key}",
                f"backbone {cfg.model.backbone!r} has no option {key!r}; "
                f"valid options: {', '.join(valid)}",
            )
    try:
        HEADS.get(cfg.head.name)
    except KeyError as err:
        _fail(source, "head.name", str(err))
    reserved = ("num_classes", "embedding_dim")
    valid = HEADS.options(cfg.head.name, exclude=(*reserved, "validate"))
    for key in cfg.head.params:
        if key not in valid:
            _fail(
                source,
                f"head.params.{key}",
                f"head {cfg.head.name!r} has no parameter {key!r}; "
                f"valid parameters: {', '.join(valid)}",
            )


def _check_option_values(cfg: TrainConfig, source: str) -> None:
    from sphereface2.config_options import check_option_values

    model = cfg.model
    problem = check_option_values(
        model.backbone,
        model.embedding_dim,
        model.input_size,
        model.options,
        cfg.head.name,
        cfg.head.params,
    )
    if problem is not None:
        _fail(source, *problem)


# --------------------------------------------------------------------------------------
# Overrides, loading, saving, diffing
# --------------------------------------------------------------------------------------


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
