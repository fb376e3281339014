"""The model config: the part of a training config that rebuilds the backbone.

A saved model (checkpoint, ``model.pt``, safetensors export, ONNX metadata) stores it as
``{backbone, embedding_dim, input_size, options}``; :func:`build_backbone_from_config` turns
it into the module, the same way for training, evaluation and export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from sphereface2.backbones import build_backbone
from sphereface2.config import ModelConfig


def model_config_from_dict(raw: Any, source: str) -> ModelConfig:
    """Check a ``{backbone, embedding_dim, input_size, options}`` mapping; errors name
    ``source`` and the key."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: the model config must be a mapping, got {raw!r}")
    # a training config's model.init/init_strict say where training started: not needed here
    known = {"backbone", "embedding_dim", "input_size", "options", "init", "init_strict"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(
            f"{source}: model.{unknown[0]}: unknown key; valid keys: backbone, "
            "embedding_dim, input_size, options"
        )
    backbone = raw.get("backbone")
    if not isinstance(backbone, str) or not backbone:
        raise ValueError(f"{source}: model.backbone: missing or not a name ({backbone!r})")
    dim = raw.get("embedding_dim", 512)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{source}: model.embedding_dim: expected a positive int, got {dim!r}")
    size = raw.get("input_size", (112, 112))
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise ValueError(f"{source}: model.input_size: expected [H, W], got {size!r}")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{source}: model.options: expected a mapping, got {options!r}")
    return ModelConfig(backbone, dim, (int(size[0]), int(size[1])), dict(options))


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """JSON/YAML-ready form of a :class:`ModelConfig`."""
    return {
        "backbone": cfg.backbone,
        "embedding_dim": cfg.embedding_dim,
        "input_size": list(cfg.input_size),
        "options": dict(cfg.options),
    }


def build_backbone_from_config(cfg: ModelConfig, source: str | None = None) -> nn.Module:
    """The backbone described by ``cfg``, built through the registry: the one recipe that
    training, evaluation, export and inference share.

    With ``source`` (the file the config came from) a bad name or option is a ValueError
    naming it; without, the registry's own error passes through.
    """
    if source is None:
        return build_backbone(
            cfg.backbone, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, **cfg.options
        )
    try:
        return build_backbone(
            cfg.backbone, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, **cfg.options
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: cannot build its backbone: {err}") from None
