"""The training data stream: epochs of shuffled batches that resume exactly mid-epoch.

Three pieces make a resumed run see the same batches *and* the same augmentations as an
uninterrupted one, with any number of DataLoader workers:

* :class:`~sphereface2.train.sampler.ResumableSampler` fixes each epoch's order from the
  seed and can start ``position`` samples into an epoch;
* :class:`SeededSampleDataset` runs each item's transform under a seed derived from
  (seed, epoch, index), so a random flip does not depend on which worker loads the item;
* :class:`TrainBatches` counts the samples actually consumed (not the ones the loader
  prefetched), which is the position a checkpoint records.

With ``data.skip_corrupt`` a reader replaces an unreadable sample by the next readable one
and records it in its ``corrupt_samples``, but each DataLoader worker keeps its own copy
of that list. So each item carries the samples its read skipped back to the main process,
where :attr:`TrainBatches.skipped_samples` collects them (once per sample) for the log.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from sphereface2.train.rng import derive_seed, fork_local_rng, sample_seed
from sphereface2.train.sampler import ResumableSampler


class SeededSampleDataset(Dataset):
    """Wraps a dataset so that item ``i`` of epoch ``e`` is produced under a fixed seed.

    The Python, NumPy and torch CPU generators are seeded with
    ``sample_seed(seed, epoch, i)`` around the wrapped ``__getitem__`` and restored after,
    so the main process's random streams are untouched when ``num_workers=0``.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.skip_log = _skip_log(dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        log = self.skip_log
        before = log.corrupt_samples if log is not None else []
        with fork_local_rng(sample_seed(self.seed, self.epoch, index)):
            item = self.dataset[index]
        if log is None:
            return item
        after = log.corrupt_samples
        skipped = [m for m in after if m not in before] if len(after) != len(before) else []
        return (*item, skipped)


def _skip_log(dataset: Any) -> Any | None:
    """The reader under ``dataset``'s wrappers (label noise, ...) that skips corrupt samples
    and lists them in ``corrupt_samples``; None when nothing is skipped."""
    for _ in range(8):  # wrappers keep the wrapped set in ``.dataset``
        if getattr(dataset, "skip_corrupt", False) and hasattr(dataset, "corrupt_samples"):
            return dataset
        dataset = getattr(dataset, "dataset", None)
        if dataset is None:
            return None
    return None


def _collate_with_skipped(items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Collate ``(image, label, skipped)`` items into ``(images, labels, all skipped)``."""
    images, labels = default_collate([item[:-1] for item in items])
    return images, labels, [message for item in items for message in item[-1]]


def _worker_init(worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C: the main process decides when and how to stop
    (it writes a checkpoint first), then shuts the workers down itself."""
    del worker_id
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TrainBatches:
    """An endless iterator of ``(images, labels)`` micro-batches over successive epochs.

    Every epoch is this rank's share of a seeded permutation, cut into full batches of
    ``batch_size`` (the tail that does not fill a batch is dropped, as in the official
    recipe). ``state_dict()`` = ``{"epoch", "position"}`` with ``position`` the number of
    this rank's samples consumed in the epoch; ``load_state_dict`` continues from there.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = SeededSampleDataset(dataset, seed)
        self.sampler = ResumableSampler(
            len(dataset), shuffle=True, seed=seed, rank=rank, world_size=world_size, drop_last=True
        )
        if self.sampler.num_samples < batch_size:
            raise ValueError(
                f"the training set has {len(dataset)} samples, fewer than one batch "
                f"({batch_size} per process x {world_size} processes)"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.batches_per_epoch = self.sampler.num_samples // batch_size
        self.epoch = 0
        self.position = 0
        self._iterator: Iterator | None = None
        #: Messages (naming file and record) of the samples skipped as unreadable, in the
        #: order met, each once; ``pop_new_skipped`` returns those not yet reported.
        self.skipped_samples: list[str] = []
        self._skipped_seen: set[str] = set()
        self._reported = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if position % self.batch_size or position > self.batches_per_epoch * self.batch_size:
            raise ValueError(
                f"cannot resume at sample {position} of epoch {epoch}: not a batch boundary "
                f"of {self.batch_size}-sample batches in a {self.sampler.num_samples}-sample epoch"
            )
        self.close()
        self.epoch, self.position = epoch, position

    def _start(self) -> Iterator:
        self.sampler.set_epoch(self.epoch, self.position)
        self.dataset.set_epoch(self.epoch)
        generator = torch.Generator()  # never draw from the global RNG (DataLoader would)
        generator.manual_seed(derive_seed(self.seed, self.rank, self.epoch, self.position))
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            generator=generator,
            collate_fn=_collate_with_skipped if self.dataset.skip_log is not None else None,
        )
        return iter(loader)

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> Any:
        if self.position >= self.batches_per_epoch * self.batch_size:
            self.close()
            self.epoch, self.position = self.epoch + 1, 0
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        self.position += self.batch_size
        if self.dataset.skip_log is None:
            return batch
        images, labels, skipped = batch
        for message in skipped:
            if message not in self._skipped_seen:
                self._skipped_seen.add(message)
                self.skipped_samples.append(message)
        return images, labels

    def pop_new_skipped(self) -> list[str]:
        """Skipped samples met since the last call (to log them as they come)."""
        new = self.skipped_samples[self._reported :]
        self._reported = len(self.skipped_samples)
        return new

    def close(self) -> None:
        """Drop the current loader iterator (shutting down its worker processes)."""
        self._iterator = None
