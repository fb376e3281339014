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

from sphereface2.config.checks import check_names
from sphereface2.config.loading import (
    apply_override,
    config_diff,
    config_from_dict,
    config_to_dict,
    flatten,
    load_config,
    resume_blocking_diff,
    save_config,
)
from sphereface2.config.schema import (
    RESUME_SAFE_KEYS,
    ConfigError,
    DataConfig,
    HeadConfig,
    LabelNoiseConfig,
    ModelConfig,
    OptimConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainConfig,
    ValSetConfig,
)
from sphereface2.config.yaml_text import parse_yaml

__all__ = [
    "RESUME_SAFE_KEYS",
    "ConfigError",
    "DataConfig",
    "HeadConfig",
    "LabelNoiseConfig",
    "ModelConfig",
    "OptimConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValSetConfig",
    "apply_override",
    "check_names",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "flatten",
    "load_config",
    "parse_yaml",
    "resume_blocking_diff",
    "save_config",
]
