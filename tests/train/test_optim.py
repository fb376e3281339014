"""Parameter groups (weight-decay policy) and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sphereface2.train.optim import LRSchedule, build_sgd, parameter_groups


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4))


def test_default_decays_everything_like_opensphere():
    net, head = _net(), nn.Linear(4, 2)
    groups = parameter_groups([net, head], 5e-4)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4
    assert len(groups[0]["params"]) == len(list(net.parameters())) + 2


def test_no_decay_bias_bn_exempts_vectors_and_scalars():
    net = _net()
    scalar = nn.Module()
    scalar.bias = nn.Parameter(torch.zeros(()))
    decay, no_decay = parameter_groups([net, scalar], 1e-3, no_decay_bias_bn=True)
    assert [p.ndim for p in decay["params"]] == [4]
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim < 2 for p in no_decay["params"]) and len(no_decay["params"]) == 5


def test_shared_and_frozen_parameters():
    a = nn.Linear(2, 2)
    b = nn.Linear(2, 2)
    b.weight.requires_grad_(False)
    groups = parameter_groups([a, a, b], 0.1)
    assert len(groups[0]["params"]) == 3
    with pytest.raises(ValueError, match="no trainable"):
        build_sgd([nn.ReLU()], 0.1, 0.9, 0.0)


def test_multistep_drops_after_milestones():
    sched = LRSchedule(0.1, 80, milestones=[40, 60], gamma=0.1)
    assert sched(0) == pytest.approx(0.1)
    assert sched(39) == pytest.approx(0.1)
    assert sched(40) == pytest.approx(0.01)
    assert sched(60) == pytest.approx(0.001)


def test_multistep_matches_torch_multisteplr():
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, [3, 7], 0.5)
    sched = LRSchedule(0.1, 10, milestones=[3, 7], gamma=0.5)
    for i in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(sched(i))
        opt.step()
        ref.step()


def test_warmup_and_cosine():
    sched = LRSchedule(1.0, 110, kind="cosine", min_lr=0.1, warmup_iters=10, warmup_factor=0.5)
    assert sched(0) == pytest.approx(0.5)
    assert sched(5) == pytest.approx(0.75)
    assert sched(10) == pytest.approx(1.0)
    assert sched(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert sched(110) == pytest.approx(0.1)
    lrs = [sched(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_unknown_schedule_type():
    with pytest.raises(ValueError, match="multistep, cosine"):
        LRSchedule(0.1, 10, kind="step")
