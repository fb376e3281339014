"""A seeded, epoch-based sampler that can resume mid-epoch, compatible with DistributedSampler.

For the same ``(seed, epoch, rank, world_size, drop_last)`` it yields exactly the indices
that ``torch.utils.data.DistributedSampler(shuffle=True)`` yields, so a single-process run
and a distributed run share one definition of "epoch e". On top of that,
``set_epoch(epoch, position)`` starts the next iteration ``position`` samples into the
epoch: a run that stopped after consuming ``position`` samples of this rank's share
continues with the very next sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) indices of one rank's share of an epoch, resumable.

    Args:
        data_source: the dataset (anything with ``len``) or its size.
        shuffle: a seeded permutation per epoch (``seed + epoch``), else ``range(n)``.
        seed: the run's seed; all ranks must pass the same one.
        rank, world_size: this process's share: ``indices[rank::world_size]``.
        drop_last: drop the tail so every rank gets ``n // world_size`` samples; otherwise
            pad by repeating the first indices so every rank gets ``ceil(n / world_size)``.
    """

    def __init__(
        self,
        data_source: Sized | int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        size = data_source if isinstance(data_source, int) else len(data_source)
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world {world_size}")
        if drop_last and size < world_size:
            raise ValueError(f"drop_last with {size} samples leaves nothing for {world_size} ranks")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        if drop_last:
            self.num_samples = size // world_size
        else:
            self.num_samples = math.ceil(size / world_size)
        self.total_size = self.num_samples * world_size
        self.epoch = 0
        self.position = 0

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        """Make the next iteration yield epoch ``epoch`` from this rank's ``position``-th sample."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= position <= self.num_samples:
            raise ValueError(
                f"position {position} is outside this rank's epoch of {self.num_samples} samples"
            )
        self.epoch = epoch
        self.position = position

    def epoch_indices(self, epoch: int) -> list[int]:
        """All of this rank's indices for ``epoch`` (from the start of the epoch)."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + epoch)
            indices = torch.randperm(self.size, generator=generator).tolist()
        else:
            indices = list(range(self.size))
        if self.drop_last:
            indices = indices[: self.total_size]
        else:
            padding = self.total_size - len(indices)
            if padding:
                repeats = math.ceil(padding / len(indices))
                indices += (indices * repeats)[:padding]
        return indices[self.rank : self.total_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch)[self.position :])

    def __len__(self) -> int:
        return self.num_samples - self.position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(int(state["epoch"]), int(state["position"]))
