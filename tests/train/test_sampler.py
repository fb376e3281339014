"""ResumableSampler: DistributedSampler's order, and exact mid-epoch resume."""

from __future__ import annotations

import pytest
from torch.utils.data import DistributedSampler

from sphereface2.train.sampler import ResumableSampler


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("size", [1, 7, 10, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_matches_distributed_sampler(size, world_size, drop_last, shuffle):
    if drop_last and size < world_size:
        pytest.skip("nothing to sample")
    for rank in range(world_size):
        ours = ResumableSampler(size, shuffle, 5, rank, world_size, drop_last)
        ref = DistributedSampler(_Sized(size), world_size, rank, shuffle, 5, drop_last)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)
            assert len(ours) == len(ref)


def test_epochs_differ_and_cover_everything():
    sampler = ResumableSampler(50, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    assert sorted(first) == sorted(second) == list(range(50))


def test_resume_from_position_continues_the_epoch():
    sampler = ResumableSampler(20, seed=3, rank=1, world_size=2)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, position=6)
    assert list(sampler) == full[6:]
    assert len(sampler) == len(full) - 6
    fresh = ResumableSampler(20, seed=3, rank=1, world_size=2)
    fresh.load_state_dict(sampler.state_dict())
    assert list(fresh) == full[6:]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        ResumableSampler(0)
    sampler = ResumableSampler(10)
    with pytest.raises(ValueError, match="position 11"):
        sampler.set_epoch(0, position=11)
