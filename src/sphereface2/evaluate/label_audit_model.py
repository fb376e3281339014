"""Open a run's backbone *and* head for the label audit.

Evaluation usually needs only the backbone (:mod:`sphereface2.models.loading`);
the audit also needs the class proxies, so it reads the ``head`` state stored beside the
backbone. A run's ``model.pt`` holds the full head even when the run was trained by
several processes (the trainer averages checkpoints whose head shards are merged); a
multi-process training checkpoint ``ckpt_*.pt`` has its head rows in shard files beside
it, which are merged here (a missing shard is an error naming it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sphereface2.config import ConfigError, TrainConfig, config_from_dict
from sphereface2.heads import build_head
from sphereface2.models.checkpoint import CHECKPOINT_FORMAT, MODEL_FORMAT, load_file
from sphereface2.models.loading import (
    TorchEmbeddingModel,
    build_backbone_from_config,
    find_run_folder,
)


@dataclass
class AuditModel:
    """What the audit scores with.

    Attributes:
        model: the backbone, ready to embed (eval mode, on the device).
        head: the trained head (eval mode, CPU), rebuilt through the head registry.
        proxies: (K, d) float32 rows of the head's weight, unit length (for ``softmax``,
            whose rows are not proxies in training, the normalised rows of its linear layer).
        config: the training config stored in the file.
        path: the file read (``model.pt`` or a checkpoint).
        run_dir: the run folder the file belongs to, or None.
        iterations: the training iterations the weights come from (averaged if several).
    """

    model: TorchEmbeddingModel
    head: nn.Module
    proxies: torch.Tensor
    config: TrainConfig
    path: Path
    run_dir: Path | None
    iterations: list[int]


def _model_file(run: Path) -> Path:
    if run.is_dir():
        path = run / "model.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not found; the audit reads the run's evaluation weights (written when "
                "training ends). Pass a checkpoint file (checkpoints/ckpt_*.pt) instead to "
                "audit an unfinished run"
            )
        return path
    if not run.is_file():
        raise FileNotFoundError(f"{run}: no such run folder or model file")
    return run


def _load_state(module: nn.Module, state: object, path: Path, what: str) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds no {what} weights (key {what!r})")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{path}: its {what} weights do not fit its stored config: {first}"
        ) from None


def load_audit_model(run: str | os.PathLike, device: str | torch.device = "cpu") -> AuditModel:
    """Rebuild the backbone and head of a run folder (its ``model.pt``) or of one
    ``model.pt`` / ``ckpt_*.pt`` file.

    Raises:
        FileNotFoundError: no ``model.pt`` in the folder, or a missing head shard.
        ValueError: the file holds no head (or no config), or weights that do not fit;
            the message names the file.
    """
    path = _model_file(Path(run))
    data = load_file(path, (MODEL_FORMAT, CHECKPOINT_FORMAT), merge_shards=True)
    try:
        cfg = config_from_dict(data.get("config"), f"{path} (its stored config)")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    head_state = data.get("head")
    backbone = build_backbone_from_config(cfg.model, str(path))
    _load_state(backbone, data.get("backbone"), path, "backbone")
    if not isinstance(head_state, dict) or not head_state:
        raise ValueError(
            f"{path}: holds no head weights (key 'head' is missing or empty), so there are no "
            "class proxies to audit the labels against"
        )
    weight = head_state.get("weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{path}: its {cfg.head.name!r} head has no (K, d) 'weight' of proxies")
    num_classes = int(data.get("num_classes", weight.shape[0]))
    try:
        head = build_head(
            cfg.head.name,
            num_classes=num_classes,
            embedding_dim=cfg.model.embedding_dim,
            **cfg.head.params,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot rebuild its head: {err}") from None
    _load_state(head, head_state, path, "head")
    head.eval()
    proxies = nn.functional.normalize(head.weight.detach().float(), dim=1)
    iteration = data.get("iteration")
    iterations = list(data.get("averaged_iterations") or ([iteration] if iteration else []))
    what = f"iterations {iterations}" + (" averaged" if len(iterations) > 1 else "")
    description = (
        f"{cfg.model.backbone} + {cfg.head.name} head ({num_classes} classes), {what} from {path}"
    )
    run_dir = find_run_folder(path)
    name = run_dir.name if run_dir is not None else path.stem
    model = TorchEmbeddingModel(backbone, cfg.model, device, name, description, str(path))
    return AuditModel(model, head, proxies, cfg, path, run_dir, [int(i) for i in iterations])
