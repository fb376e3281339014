"""Distributed plumbing: process-group set-up, collectives with exact gradients, class shards.

A single process needs none of it: without a process group every helper answers as rank 0
of a world of one and every collective is an identity.
"""

from sphereface2.distributed.collectives import (
    all_gather_rows,
    all_gather_with_grad,
    all_reduce_max,
    all_reduce_scalars,
    gather_and_replicate,
    gather_sizes,
    global_sum,
    sum_allreduce_hook,
)
from sphereface2.distributed.grad_norm import clip_grad_norm_, global_grad_norm
from sphereface2.distributed.process_group import (
    DistributedContext,
    LaunchEnv,
    backend_name,
    barrier,
    cleanup,
    default_backend,
    distributed_session,
    init_distributed,
    is_initialized,
    is_main,
    rank,
    read_launch_env,
    world_size,
)
from sphereface2.distributed.sharding import class_shard, shard_sizes

__all__ = [
    "DistributedContext",
    "LaunchEnv",
    "all_gather_rows",
    "all_gather_with_grad",
    "all_reduce_max",
    "all_reduce_scalars",
    "backend_name",
    "barrier",
    "class_shard",
    "cleanup",
    "clip_grad_norm_",
    "default_backend",
    "distributed_session",
    "gather_and_replicate",
    "gather_sizes",
    "global_grad_norm",
    "global_sum",
    "init_distributed",
    "is_initialized",
    "is_main",
    "rank",
    "read_launch_env",
    "shard_sizes",
    "sum_allreduce_hook",
    "world_size",
]
