"""Run a function on N local Gloo processes, started the way torchrun starts them.

Each process gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free
MASTER_PORT in its environment, sets up the process group with
:func:`sphereface2.distributed.init_distributed`, runs ``fn(ctx, *args)`` and saves what it
returns; the parent gets the list of returns in rank order. An exception on any rank
re-raises in the parent with that rank's traceback.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from sphereface2.distributed import distributed_session

COLLECTIVE_TIMEOUT_S = 60.0  # a rank stuck in a collective fails the test instead of hanging


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn: Callable, args: tuple, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    with distributed_session("cpu", timeout_s=COLLECTIVE_TIMEOUT_S) as ctx:
        result = fn(ctx, *args)
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def run_world(fn: Callable[..., Any], world: int, *args: Any) -> list[Any]:
    """``fn(ctx, *args)`` on ``world`` processes; their return values in rank order.

    ``fn`` must be importable by name (a module-level function) and return something
    ``torch.save`` can write.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_entry, args=(world, free_port(), fn, args, out_dir), nprocs=world, join=True)
        return [torch.load(Path(out_dir) / f"rank{r}.pt") for r in range(world)]
