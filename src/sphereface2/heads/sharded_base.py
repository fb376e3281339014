"""What every class-sharded head shares: the class range, the proxy init, gathering the
global batch with its checks, and conversion to and from the plain head's state dict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from sphereface2.distributed.collectives import all_gather_rows, gather_and_replicate, gather_sizes
from sphereface2.distributed.process_group import rank as get_rank
from sphereface2.distributed.process_group import world_size as get_world_size
from sphereface2.distributed.sharding import class_shard, shard_sizes
from sphereface2.heads.arg_checks import check_batch, check_choice, check_sizes
from sphereface2.heads.base import renormalise_
from sphereface2.heads.registry import build_head

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

INIT_MODES = ("full", "shard")


#: Below this many proxy entries the template is simply built on the CPU (4 MiB): the meta
#: device's normal_ imports torch._dynamo, about a second per process.
_CPU_TEMPLATE_MAX_ENTRIES = 1 << 20


def meta_template(name: str, num_classes: int, embedding_dim: int, params: dict) -> nn.Module:
    """The plain head, built on the meta device for large heads: it checks the parameters
    and carries the hyper-parameters and margin functions without allocating a (K, d)
    matrix."""
    small = (
        isinstance(num_classes, int)
        and isinstance(embedding_dim, int)
        and num_classes * embedding_dim <= _CPU_TEMPLATE_MAX_ENTRIES
    )
    if small:  # drawing its init must not disturb the caller's random stream
        with torch.random.fork_rng(devices=[]):
            return build_head(name, num_classes, embedding_dim, **params)
    with torch.device("meta"):
        return build_head(name, num_classes, embedding_dim, **params)


def _shard_seed(seed: int, start: int) -> int:
    """A per-shard generator seed derived from the run's seed and the shard's first class."""
    return (seed * 0x9E3779B97F4A7C15 + start * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def init_proxy_rows(
    num_classes: int,
    embedding_dim: int,
    start: int,
    end: int,
    *,
    mode: str = "full",
    seed: int = 0,
    renormalise: bool = True,
) -> Tensor:
    """Rows ``[start, end)`` of a Xavier-normal (num_classes, embedding_dim) proxy matrix.

    ``mode="full"`` draws the whole matrix from a CPU generator seeded with ``seed`` and
    keeps the slice: the rows are exactly those of a plain head built right after
    ``torch.manual_seed(seed)``, but every rank briefly holds K x d floats (2 GB for
    1M x 512 in float32). ``mode="shard"`` draws only the slice, from a generator seeded by
    ``(seed, start)``, with the standard deviation of the global (K, d) Xavier init: the
    same distribution and K_local x d memory, but not the plain head's values.
    ``renormalise`` scales every row to unit length (the normalised-proxy heads).
    """
    check_choice("init_proxy_rows", "mode", mode, INIT_MODES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"init_proxy_rows: seed must be an int, got {seed!r}")
    if not 0 <= start <= end <= num_classes:
        raise ValueError(f"init_proxy_rows: need 0 <= start <= end <= {num_classes}")
    if mode == "full":
        full = torch.empty(num_classes, embedding_dim)
        nn.init.xavier_normal_(full, generator=torch.Generator().manual_seed(seed))
        if renormalise:
            renormalise_(full)  # on the full matrix, exactly as the plain head does
        return full[start:end].clone()
    std = math.sqrt(2.0 / (num_classes + embedding_dim))  # Xavier fans of the global matrix
    generator = torch.Generator().manual_seed(_shard_seed(seed, start))
    rows = torch.empty(end - start, embedding_dim).normal_(0.0, std, generator=generator)
    if renormalise:
        renormalise_(rows)
    return rows


class ShardedHead(nn.Module):
    """Shared plumbing: class range, batch gathering and checks, full-weight conversion.

    Built from the plain head's registry name ``head_name`` (errors name it), its sizes
    and ``validate``. Parameters named in ``sharded_keys`` hold this rank's class rows
    along dim 0; every other parameter is replicated (identical on all ranks). Parameter
    names equal the plain head's, so :meth:`full_state_dict` loads into the plain head and
    :meth:`load_full_state_dict` takes a plain head's state dict.
    """

    sharded_keys: tuple[str, ...] = ("weight",)

    def __init__(
        self,
        head_name: str,
        num_classes: int,
        embedding_dim: int,
        group: ProcessGroup | None,
        *,
        validate: bool,
        init: str,
        seed: int,
        renormalise: bool,
    ) -> None:
        super().__init__()
        self.head_name = str(head_name)
        self.num_classes, self.embedding_dim = check_sizes(head_name, num_classes, embedding_dim)
        self.validate = bool(validate)
        self.init = check_choice(f"sharded {self.head_name}", "init", init, INIT_MODES)
        self.seed = seed
        self.group = group
        self.rank = get_rank(group)
        self.world_size = get_world_size(group)
        self.class_start, self.class_end = class_shard(self.num_classes, self.rank, self.world_size)
        self.weight = nn.Parameter(
            init_proxy_rows(
                self.num_classes,
                self.embedding_dim,
                self.class_start,
                self.class_end,
                mode=init,
                seed=seed,
                renormalise=renormalise,
            )
        )

    @property
    def num_local_classes(self) -> int:
        return self.class_end - self.class_start

    def sharded_parameters(self) -> list[nn.Parameter]:
        """Parameters holding this rank's class rows (different on every rank)."""
        return [p for key, p in self.named_parameters() if key in self.sharded_keys]

    def replicated_parameters(self) -> list[nn.Parameter]:
        """Parameters identical on every rank (their gradients are summed in the backward)."""
        return [p for key, p in self.named_parameters() if key not in self.sharded_keys]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"classes=[{self.class_start}, {self.class_end}), rank={self.rank}, "
            f"world_size={self.world_size}"
        )

    # -- the batch -------------------------------------------------------------------------

    def gather_batch(
        self, embeddings: Tensor, labels: Tensor, replicated: Sequence[Tensor] = ()
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Check the local batch, gather the global one and check its values.

        Values are checked after the gather so that every rank sees the same global batch
        and raises the same error (an error on one rank alone would leave the others
        waiting in a collective). Batch indices in that error count in the global batch.
        """
        name = f"sharded {self.head_name}"
        if get_world_size(self.group) != self.world_size:
            raise RuntimeError(
                f"{name} was built for a world of {self.world_size} but the process group now "
                f"has {get_world_size(self.group)} ranks; build the head after "
                "init_distributed()"
            )
        dims = {"num_classes": self.num_classes, "embedding_dim": self.embedding_dim}
        check_batch(name, embeddings, labels, check_values=False, **dims)
        if self.world_size == 1:
            x, y, reps = embeddings, labels, list(replicated)
        else:
            sizes = gather_sizes(embeddings.shape[0], self.group, embeddings.device)
            x, reps = gather_and_replicate(embeddings, replicated, self.group, sizes=sizes)
            y = all_gather_rows(labels.long(), self.group, sizes=sizes)
            name = f"{name} (global batch of {len(sizes)} ranks, sizes {sizes})"
        if self.validate:
            check_batch(name, x.detach(), y, check_values=True, **dims)
        return x, y, reps

    def positive_columns(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1) column of each label within this shard (0 where it lies elsewhere) and the
        (B,) mask of labels this shard owns."""
        index = labels.long() - self.class_start
        owned = (index >= 0) & (index < self.num_local_classes)
        return torch.where(owned, index, 0).unsqueeze(1), owned

    # -- checkpoints -----------------------------------------------------------------------

    def gather_full(self, key: str = "weight", dst: int | None = 0) -> Tensor | None:
        """The full (num_classes, ...) tensor of sharded parameter ``key``, detached.

        ``dst`` is a rank of the head's group: only it gets the tensor (others get None);
        ``dst=None`` gives it to every rank. All ranks must call this.
        """
        if key not in self.sharded_keys:
            raise ValueError(f"{key!r} is not sharded; sharded keys: {self.sharded_keys}")
        local = getattr(self, key).detach()
        if self.world_size == 1:
            return local.clone()
        sizes = shard_sizes(self.num_classes, self.world_size)
        rows = max(sizes)
        padded = local.new_zeros((rows, *local.shape[1:]))
        padded[: local.shape[0]] = local
        if dst is None:
            parts: list[Tensor] | None = [torch.empty_like(padded) for _ in sizes]
            dist.all_gather(parts, padded, group=self.group)
        else:
            if not 0 <= dst < self.world_size:
                raise ValueError(f"dst must be in [0, {self.world_size}), got {dst}")
            mine = self.rank == dst
            parts = [torch.empty_like(padded) for _ in sizes] if mine else None
            global_dst = dst if self.group is None else dist.get_global_rank(self.group, dst)
            dist.gather(padded, parts, dst=global_dst, group=self.group)
        if parts is None:
            return None
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def gather_full_weight(self, dst: int | None = 0) -> Tensor | None:
        """The full (num_classes, embedding_dim) proxy matrix on ``dst`` (None: every rank)."""
        return self.gather_full("weight", dst)

    @torch.no_grad()
    def load_full_weight(self, weight: Tensor) -> None:
        """Copy this rank's rows of a full (num_classes, embedding_dim) matrix into ``weight``."""
        self._load_rows("weight", weight)

    def full_state_dict(self, dst: int | None = 0) -> dict[str, Tensor] | None:
        """The plain head's state dict (full sharded tensors) on ``dst``; None elsewhere.
        Buffers (a class sampler's draw counter) are replicated."""
        full: dict[str, Tensor] = {}
        for key, param in self.named_parameters():
            value = self.gather_full(key, dst) if key in self.sharded_keys else param.detach()
            if value is not None:
                full[key] = value.clone()
        for key, buffer in self.named_buffers():
            full[key] = buffer.detach().clone()
        return full if dst is None or self.rank == dst else None

    @torch.no_grad()
    def load_full_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a plain head's state dict: this rank's rows of the sharded tensors, the
        replicated ones whole. Keys must match exactly."""
        expected = {key for key, _ in self.named_parameters()}
        expected |= {key for key, _ in self.named_buffers()}
        if set(state) != expected:
            raise ValueError(
                f"sharded {self.head_name}: state dict has keys {sorted(state)}, "
                f"expected {sorted(expected)}"
            )
        for key, param in [*self.named_parameters(), *self.named_buffers()]:
            if key in self.sharded_keys:
                self._load_rows(key, state[key])
            else:
                if tuple(state[key].shape) != tuple(param.shape):
                    raise ValueError(
                        f"sharded {self.head_name}: {key} has shape {tuple(state[key].shape)}, "
                        f"expected {tuple(param.shape)}"
                    )
                param.copy_(state[key])

    def _load_rows(self, key: str, full: Tensor) -> None:
        param = getattr(self, key)
        expected = (self.num_classes, *param.shape[1:])
        if tuple(full.shape) != expected:
            raise ValueError(
                f"sharded {self.head_name}: full {key} has shape {tuple(full.shape)}, "
                f"expected {expected}"
            )
        param.data.copy_(full[self.class_start : self.class_end])


def cosine_sums(cos: Tensor, column: Tensor, owned: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of the cosines to owned labels' proxies and sum of all cosines (this shard)."""
    total = cos.sum()
    if cos.shape[1] == 0:
        return total.new_zeros(()), total
    cos_y = cos.gather(1, column).squeeze(1)
    return torch.where(owned, cos_y, 0.0).sum(), total


def split_state_dict(
    full: Mapping[str, Tensor],
    sharded_keys: Sequence[str],
    num_classes: int,
    rank: int,
    world_size: int,
) -> dict[str, Tensor]:
    """One rank's shard of a plain head's state dict (no process group needed)."""
    start, end = class_shard(num_classes, rank, world_size)
    out = {}
    for key, value in full.items():
        if key in sharded_keys:
            if value.shape[0] != num_classes:
                raise ValueError(f"{key} has {value.shape[0]} rows, expected {num_classes}")
            out[key] = value[start:end].clone()
        else:
            out[key] = value.clone()
    return out


def merge_state_dicts(
    shards: Sequence[Mapping[str, Tensor]], sharded_keys: Sequence[str]
) -> dict[str, Tensor]:
    """A plain head's state dict from the per-rank state dicts of a sharded head, in rank
    order (e.g. shard files saved by each rank). Replicated tensors must agree."""
    if not shards:
        raise ValueError("merge_state_dicts: no shards")
    keys = set(shards[0])
    for index, shard in enumerate(shards):
        if set(shard) != keys:
            raise ValueError(f"shard {index} has keys {sorted(shard)}, shard 0 has {sorted(keys)}")
    merged = {}
    for key in shards[0]:
        if key in sharded_keys:
            merged[key] = torch.cat([shard[key] for shard in shards])
            continue
        for index, shard in enumerate(shards[1:], start=1):
            if not torch.equal(shard[key], shards[0][key]):
                raise ValueError(f"replicated {key!r} differs between shard 0 and shard {index}")
        merged[key] = shards[0][key].clone()
    return merged
