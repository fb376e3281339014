"""What a training checkpoint holds, as one object: the payload written, and how it is put
back into a live run.

``TrainingState`` wraps the live objects of a run (backbone, head, optimiser, gradient
scaler, data position) and converts them to and from the checkpoint payload:

    state = TrainingState(config, backbone, head, optimizer, scaler, batches,
                          dataset_size=len(dataset), num_classes=K)
    parts = state.state_dict(iteration)     # CheckpointParts(main, shard)
    notes = state.load_state_dict(checkpoint, path)

The main payload (``format`` "sphereface2-checkpoint", version 1; ``save_checkpoint`` adds
the format tags and ``iteration``) has the keys

    config     the run's config as a plain dict
    backbone   the backbone's state dict
    head       the head's state dict (without its class rows when written by several processes)
    optimizer  the optimiser's state dict (likewise without the rows' momentum)
    scaler     the gradient scaler's state dict
    rng        the generators' states (:mod:`sphereface2.models.rng_state`)
    data       epoch, position (samples consumed per process), world_size, dataset_size,
               num_classes
    sharding   world_size, num_classes, keys (optimiser ids of the head's class-row parameters)

With several processes each rank's class rows, their optimiser state and its own RNG
states go to a shard file (:mod:`sphereface2.models.sharded_checkpoint`), written before the
main file that commits the checkpoint. The evaluation model file (``model.pt``, format
"sphereface2-model") is :func:`model_file_payload`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from sphereface2.config import TrainConfig, config_to_dict
from sphereface2.models.checkpoint import FORMAT_VERSION, MODEL_FORMAT
from sphereface2.models.rng_state import capture_rng_state, restore_rng_state
from sphereface2.models.sharded_checkpoint import (
    load_rows,
    shard_payload,
    shard_rng,
    sharding_record,
    split_optimizer_state,
)


class ResumeError(ValueError):
    """A checkpoint cannot continue this config (different recipe, model or data)."""


class ShardedHeadLike(Protocol):
    """What the state needs of a (class-sharded) head."""

    sharded_keys: tuple[str, ...]
    class_start: int
    class_end: int

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> Any: ...
    def named_parameters(self) -> Any: ...


class DataPosition(Protocol):
    """The training batch stream: epoch and samples consumed, saved and restored."""

    def state_dict(self) -> dict[str, int]: ...
    def load_state_dict(self, state: Mapping[str, int]) -> None: ...


class CheckpointParts(NamedTuple):
    """The main checkpoint payload, and this rank's shard payload (None with one file)."""

    main: dict[str, Any]
    shard: dict[str, Any] | None


class TrainingState:
    """The saved and restored state of one training run (see the module docstring).

    Args:
        config: the run's config (stored with every checkpoint).
        backbone, head, optimizer, scaler: the live objects.
        data: the batch stream's position (``state_dict`` / ``load_state_dict``).
        dataset_size, num_classes: of the training set; a checkpoint of other data is refused.
        rank, world_size: this process and the number of processes.
        shard_files: write the head's class rows to per-rank shard files (several processes).
    """

    def __init__(
        self,
        config: TrainConfig,
        backbone: nn.Module,
        head: ShardedHeadLike,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        data: DataPosition,
        *,
        dataset_size: int,
        num_classes: int,
        rank: int = 0,
        world_size: int = 1,
        shard_files: bool = False,
    ) -> None:
        self.config = config
        self.backbone = backbone
        self.head = head
        self.optimizer = optimizer
        self.scaler = scaler
        self.data = data
        self.dataset_size = int(dataset_size)
        self.num_classes = int(num_classes)
        self.rank = rank
        self.world_size = world_size
        self.shard_files = shard_files
        self.sharded_param_ids = self._sharded_param_ids()

    def _sharded_param_ids(self) -> dict[str, int]:
        """Optimiser state-dict ids of the head's sharded parameters (ids count the
        parameters across param groups in order, as ``Optimizer.state_dict`` does)."""
        params = [param for group in self.optimizer.param_groups for param in group["params"]]
        ids = {id(param): index for index, param in enumerate(params)}
        names = dict(self.head.named_parameters())
        return {key: ids[id(names[key])] for key in self.head.sharded_keys}

    # ----- saving ---------------------------------------------------------------------------
    def state_dict(self, iteration: int) -> CheckpointParts:
        """The payloads of a checkpoint taken after ``iteration`` optimiser steps."""
        ids = self.sharded_param_ids
        head = self.head.state_dict()
        optimizer = self.optimizer.state_dict()
        rng = capture_rng_state()
        shard = None
        if self.shard_files:
            rows = {key: head.pop(key) for key in self.head.sharded_keys}
            optimizer, optimizer_rows = split_optimizer_state(optimizer, ids)
            shard = shard_payload(
                iteration,
                self.rank,
                self.world_size,
                (self.head.class_start, self.head.class_end),
                rows,
                optimizer_rows,
                rng,
            )
        main = {
            "config": config_to_dict(self.config),
            "backbone": self.backbone.state_dict(),
            "head": head,
            "optimizer": optimizer,
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "data": {
                **self.data.state_dict(),
                "world_size": self.world_size,
                "dataset_size": self.dataset_size,
                "num_classes": self.num_classes,
            },
            "sharding": {
                "world_size": self.world_size,
                "num_classes": self.num_classes,
                "keys": ids,
            },
        }
        return CheckpointParts(main, shard)

    # ----- resuming -------------------------------------------------------------------------
    def load_state_dict(self, checkpoint: dict[str, Any], path: Path | None) -> list[str]:
        """Put a loaded checkpoint (its main payload, shards left on disk) back into the live
        objects; this rank reads only its own class rows. Returns notes for the run's log.

        Raises:
            ResumeError: the checkpoint's data or weights do not fit this run.
        """
        notes: list[str] = []
        data = checkpoint["data"]
        if (data["dataset_size"], data["num_classes"]) != (self.dataset_size, self.num_classes):
            raise ResumeError(
                f"{path}: the checkpoint was trained on {data['dataset_size']} images of "
                f"{data['num_classes']} classes but {self.config.data.train} has "
                f"{self.dataset_size} images of {self.num_classes} classes"
            )
        saved_world = int(sharding_record(checkpoint)["world_size"])
        rng = shard_rng(path, checkpoint, self.rank) if saved_world == self.world_size else None
        checkpoint = load_rows(
            path, checkpoint, self.head.class_start, self.head.class_end, self.sharded_param_ids
        )
        for name, module in (("backbone", self.backbone), ("head", self.head)):
            try:
                module.load_state_dict(checkpoint[name])
            except RuntimeError as err:
                first = str(err).strip().splitlines()
                raise ResumeError(
                    f"{path}: its {name} weights do not fit the configured {name}: "
                    f"{' '.join(line.strip() for line in first[:3])}"
                ) from None
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.data.load_state_dict(self._data_position(data, path))
        if rng is None:
            notes.append(
                f"resuming a {saved_world}-process checkpoint with {self.world_size} "
                "process(es): same weights, optimiser state and data order; the random "
                "streams continue from rank 0's, so the run is not bit-identical to an "
                "uninterrupted one"
            )
            rng = checkpoint["rng"]
        restore_rng_state(rng)
        return notes

    def _data_position(self, data: Mapping[str, Any], path: Path | None) -> dict[str, int]:
        """The saved data position in this world's terms: every rank consumed the same
        number of samples, interleaved, so the global position is ``position x world``."""
        saved_world = int(data.get("world_size", 1))
        consumed = int(data["position"]) * saved_world
        if consumed % self.world_size:
            raise ResumeError(
                f"{path}: {consumed} samples of epoch {data['epoch']} were consumed, which "
                f"{self.world_size} processes cannot split evenly"
            )
        return {"epoch": int(data["epoch"]), "position": consumed // self.world_size}


def model_file_payload(
    config: TrainConfig,
    iteration: int,
    averaged_iterations: list[int],
    num_classes: int,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
) -> dict[str, Any]:
    """The evaluation model file (``model.pt``): the config, the (averaged) ``backbone`` and
    ``head`` state dicts of ``weights``, and which checkpoints they average."""
    return {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "config": config_to_dict(config),
        "iteration": iteration,
        "averaged_iterations": averaged_iterations,
        "num_classes": num_classes,
        "backbone": weights["backbone"],
        "head": weights["head"],
    }
