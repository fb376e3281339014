"""Rebuild a trained backbone (and head) from a run's ``model.pt`` or any checkpoint.

    >>> trained = load_trained_model("runs/demo/model.pt")
    >>> embeddings = trained.backbone(images)

Both file kinds store the effective config, so the modules are rebuilt through the
registries exactly as trained; the weights are loaded strictly (every key must match).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sphereface2.config import ConfigError, TrainConfig, config_from_dict
from sphereface2.heads import build_head
from sphereface2.train.checkpoint import CHECKPOINT_FORMAT, MODEL_FORMAT, load_file


@dataclass
class TrainedModel:
    """A rebuilt model: the backbone in eval mode, its head, and where they came from."""

    backbone: nn.Module
    head: nn.Module
    config: TrainConfig
    iteration: int
    averaged_iterations: list[int]
    source: Path


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Load ``model.pt`` (averaged weights) or a training checkpoint and rebuild the modules.

    A run folder is accepted too: its ``model.pt``. Errors name the file.
    """
    from sphereface2.train.trainer import build_model  # the trainer's own model recipe

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    data = load_file(path, (MODEL_FORMAT, CHECKPOINT_FORMAT), map_location="cpu")
    try:
        cfg = config_from_dict(data.get("config"), f"{path} (its stored config)")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    num_classes = _num_classes(data, path)
    backbone = build_model(cfg.model)
    head = build_head(
        cfg.head.name,
        num_classes=num_classes,
        embedding_dim=cfg.model.embedding_dim,
        **cfg.head.params,
    )
    for name, module in (("backbone", backbone), ("head", head)):
        try:
            module.load_state_dict(data[name])
        except (KeyError, RuntimeError) as err:
            raise ValueError(
                f"{path}: its {name} weights do not fit the stored config: {err}"
            ) from None
    backbone.to(device).eval()
    head.to(device).eval()
    return TrainedModel(
        backbone=backbone,
        head=head,
        config=cfg,
        iteration=int(data["iteration"]),
        averaged_iterations=list(data.get("averaged_iterations", [int(data["iteration"])])),
        source=path,
    )


def _num_classes(data: dict[str, Any], path: Path) -> int:
    if "num_classes" in data:
        return int(data["num_classes"])
    if "data" in data and "num_classes" in data["data"]:
        return int(data["data"]["num_classes"])
    raise ValueError(f"{path}: does not record the number of classes")
