"""Process-group set-up from the torchrun environment, and rank helpers that work without one.

A run started by ``torchrun --nproc-per-node N`` (or any launcher that sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) gets one process group: NCCL when the
device is CUDA, Gloo otherwise. A plain ``python`` run (no RANK/WORLD_SIZE, or a world of
one) gets no process group at all; every helper here then answers as rank 0 of a world of 1
and the collectives in :mod:`sphereface2.distributed.collectives` become identities.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


@dataclass(frozen=True)
class LaunchEnv:
    """What the launcher told this process (defaults: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class DistributedContext:
    """The outcome of :func:`init_distributed`.

    ``backend`` is None for a single process (no process group); ``initialized_here`` says
    whether :func:`init_distributed` created the process group (and so whether
    :func:`distributed_session` destroys it on exit).
    """

    env: LaunchEnv
    device: torch.device
    backend: str | None
    initialized_here: bool

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0


def _env_int(env: Mapping[str, str], name: str, *, minimum: int, maximum: int | None = None) -> int:
    raw = env[name]
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"environment variable {name} must be >= {minimum}{upper}, got {value}")
    return value


def read_launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """Parse the torchrun variables from ``environ`` (default: ``os.environ``).

    Neither RANK nor WORLD_SIZE set means a single process. Otherwise both are required;
    LOCAL_RANK defaults to RANK (one node); with a world above one MASTER_ADDR and
    MASTER_PORT are required. Bad values raise ValueError naming the variable.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return LaunchEnv()
    for name in ("RANK", "WORLD_SIZE"):
        if name not in env:
            other = "WORLD_SIZE" if name == "RANK" else "RANK"
            raise ValueError(f"environment variable {other} is set but {name} is not")
    world = _env_int(env, "WORLD_SIZE", minimum=1)
    rank = _env_int(env, "RANK", minimum=0, maximum=world - 1)
    local_rank = _env_int(env, "LOCAL_RANK", minimum=0) if "LOCAL_RANK" in env else rank
    if world == 1:
        return LaunchEnv(rank, world, local_rank)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name, "").strip():
            raise ValueError(
                f"environment variable {name} is required with WORLD_SIZE={world} "
                "(torchrun sets it; with another launcher export it yourself)"
            )
    port = _env_int(env, "MASTER_PORT", minimum=1, maximum=65535)
    return LaunchEnv(rank, world, local_rank, env["MASTER_ADDR"].strip(), port)


def default_backend(device: torch.device | str) -> str:
    """NCCL for CUDA devices, Gloo for everything else."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def is_initialized() -> bool:
    """Whether a default process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(
    device: torch.device | str = "cpu",
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 1800.0,
) -> DistributedContext:
    """Create the default process group described by the launcher's environment.

    ``device`` "cuda" without an index becomes ``cuda:LOCAL_RANK`` (and the current CUDA
    device). A single process returns a context with ``backend=None`` and creates nothing.
    If a process group already exists it is reused after checking that it matches the
    environment. ``timeout_s`` bounds how long a collective waits for a missing rank.
    """
    env = read_launch_env(environ)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not env.is_distributed:
        return DistributedContext(env, dev, None, False)
    if is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
            raise RuntimeError(
                f"a process group (rank {dist.get_rank()} of {dist.get_world_size()}) already "
                f"exists but the environment says rank {env.rank} of {env.world_size}"
            )
        return DistributedContext(env, dev, dist.get_backend(), False)
    chosen = backend or default_backend(dev)
    host = f"[{env.master_addr}]" if ":" in str(env.master_addr) else env.master_addr
    dist.init_process_group(
        chosen,
        init_method=f"tcp://{host}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    return DistributedContext(env, dev, chosen, True)


def rank(group: ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (default: the world); 0 without a process group."""
    if is_initialized():
        return dist.get_rank(group)
    if group is not None:
        raise RuntimeError("a process group was passed but torch.distributed is not initialised")
    return 0


def world_size(group: ProcessGroup | None = None) -> int:
    """The number of ranks in ``group`` (default: the world); 1 without a process group."""
    if is_initialized():
        return dist.get_world_size(group)
    if group is not None:
        raise RuntimeError("a process group was passed but torch.distributed is not initialised")
    return 1


def is_main(group: ProcessGroup | None = None) -> bool:
    """True on rank 0 (and in a single process): the rank that logs and writes files."""
    return rank(group) == 0


def backend_name(group: ProcessGroup | None = None) -> str | None:
    """The backend of ``group`` ("gloo", "nccl", ...), or None without a process group."""
    return str(dist.get_backend(group)) if is_initialized() else None


def barrier(group: ProcessGroup | None = None) -> None:
    """Wait for every rank of ``group``; a no-op without a process group."""
    if is_initialized():
        dist.barrier(group=group)


def cleanup() -> None:
    """Destroy the default process group if there is one (safe to call twice)."""
    if is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(
    device: torch.device | str = "cpu",
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 1800.0,
) -> Iterator[DistributedContext]:
    """``with distributed_session("cuda") as ctx:`` — init, then destroy what was created."""
    context = init_distributed(device, backend=backend, environ=environ, timeout_s=timeout_s)
    try:
        yield context
    finally:
        if context.initialized_here:
            cleanup()
