"""Which classes each rank owns: contiguous, near-equal class ranges."""

from __future__ import annotations


def class_shard(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """The half-open class range ``[start, end)`` owned by ``rank`` among ``world`` ranks.

    Ranges are contiguous, cover ``[0, num_classes)`` in rank order, and differ in size by at
    most one; the first ``num_classes % world`` ranks hold the one extra class. With fewer
    classes than ranks the last ranks get empty ranges (``start == end``).

    >>> [class_shard(7, r, 3) for r in range(3)]
    [(0, 3), (3, 5), (5, 7)]
    """
    for name, value in (("num_classes", num_classes), ("rank", rank), ("world", world)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"class_shard: {name} must be an int, got {value!r}")
    if num_classes < 0:
        raise ValueError(f"class_shard: num_classes must be >= 0, got {num_classes}")
    if world < 1:
        raise ValueError(f"class_shard: world must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"class_shard: rank must be in [0, {world}), got {rank}")
    base, extra = divmod(num_classes, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_sizes(num_classes: int, world: int) -> list[int]:
    """The number of classes of every rank, in rank order (see :func:`class_shard`)."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"shard_sizes: world must be an int >= 1, got {world!r}")
    sizes = []
    for rank in range(world):
        start, end = class_shard(num_classes, rank, world)
        sizes.append(end - start)
    return sizes
