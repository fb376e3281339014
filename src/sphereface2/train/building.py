"""A run's parts from its config: the backbone, the training set, this process's share of
the head and of the batch, and the autocast dtype.

The trainer asks the registries for the backbone and the head (it never imports a concrete
model); the distributed trainer and the evaluation tools reuse these builders.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from sphereface2.config import ConfigError, ModelConfig, TrainConfig
from sphereface2.data.label_noise import NoisyLabelDataset
from sphereface2.data.training_sets import open_training_set
from sphereface2.data.transforms import train_transform
from sphereface2.heads.sharded import ShardedHead, build_sharded_head
from sphereface2.models.model_config import build_backbone_from_config

#: ``head.init: auto`` draws the full proxy matrix up to this many entries (1 GiB float32).
FULL_INIT_MAX_ENTRIES = 1 << 28


def build_model(cfg: ModelConfig) -> nn.Module:
    """The backbone described by ``cfg``: :func:`sphereface2.models.build_backbone_from_config`."""
    return build_backbone_from_config(cfg)


def build_training_set(cfg: TrainConfig) -> Any:
    """The training dataset with the paper's transform, plus label noise if configured."""
    dataset = open_training_set(
        cfg.data.train,
        transform=train_transform(cfg.model.input_size),
        skip_corrupt=cfg.data.skip_corrupt,
    )
    if dataset.num_classes is None:
        raise ValueError(f"{cfg.data.train}: cannot tell the number of classes")
    if cfg.data.label_noise.p > 0:
        noise = cfg.data.label_noise
        dataset = NoisyLabelDataset(dataset, noise.p, dataset.num_classes, noise.seed)
    return dataset


def build_training_head(cfg: TrainConfig, num_classes: int) -> ShardedHead:
    """This process's shard of the configured head, over the default process group (all
    classes without one: then it computes exactly what the plain head does)."""
    init = cfg.head.init
    if init == "auto":
        entries = num_classes * cfg.model.embedding_dim
        init = "full" if entries <= FULL_INIT_MAX_ENTRIES else "shard"
    return build_sharded_head(
        cfg.head.name,
        num_classes,
        cfg.model.embedding_dim,
        None,
        init=init,
        seed=cfg.seed,
        **cfg.head.params,
    )


def per_process_batch(cfg: TrainConfig, world_size: int) -> int:
    """Images per micro-batch on each process: the global batch / (accumulation x world)."""
    parts = cfg.optim.accumulation_steps * world_size
    if cfg.data.batch_size % parts:
        raise ConfigError(
            f"data.batch_size: {cfg.data.batch_size} images per step cannot be split into "
            f"{cfg.optim.accumulation_steps} accumulation step(s) x {world_size} process(es)"
        )
    return cfg.data.batch_size // parts


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp`` (None for full precision)."""
    if amp == "none":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.amp: fp16 needs a CUDA device; use bf16 or none on the CPU")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
