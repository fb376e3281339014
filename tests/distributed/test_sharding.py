"""Class-range partition: coverage, contiguity, balance, empty shards and argument errors."""

from __future__ import annotations

import pytest

from sphereface2.distributed.sharding import class_shard, shard_sizes


@pytest.mark.parametrize("num_classes", [0, 1, 2, 5, 7, 8, 9, 100, 8631])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8, 11])
def test_shards_tile_the_classes_in_rank_order(num_classes: int, world: int) -> None:
    ranges = [class_shard(num_classes, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_classes
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert end == start  # contiguous, no gap or overlap
    sizes = [end - start for start, end in ranges]
    assert sizes == shard_sizes(num_classes, world)
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # earlier ranks get the extra classes
    assert sum(sizes) == num_classes


def test_known_partitions() -> None:
    assert [class_shard(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [class_shard(8, r, 2) for r in range(2)] == [(0, 4), (4, 8)]
    assert [class_shard(2, r, 3) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]  # last is empty
    assert class_shard(8631, 7, 8) == (7553, 8631)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((7, 3, 3), r"rank must be in \[0, 3\), got 3"),
        ((7, -1, 3), r"rank must be in \[0, 3\), got -1"),
        ((7, 0, 0), "world must be >= 1, got 0"),
        ((-1, 0, 2), "num_classes must be >= 0, got -1"),
        ((7.0, 0, 2), "num_classes must be an int, got 7.0"),
        ((7, True, 2), "rank must be an int, got True"),
    ],
)
def test_bad_arguments_are_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_shard(*args)


def test_shard_sizes_rejects_bad_world() -> None:
    with pytest.raises(ValueError, match="world must be an int >= 1, got 0"):
        shard_sizes(5, 0)
