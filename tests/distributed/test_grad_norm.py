"""Global gradient-norm clipping over replicated and sharded parameters (one process; the
multi-process check against the single-process model is in test_multiprocess.py)."""

from __future__ import annotations

import math

import pytest
import torch

from sphereface2.distributed import clip_grad_norm_, global_grad_norm


def _params(scale: float) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in [(3, 4), (4,), (), (0, 4)]]
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=gen)
    return params


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
@pytest.mark.parametrize("scale", [0.01, 10.0])  # below and above max_norm
def test_matches_torch_clip_grad_norm(norm_type: float, scale: float) -> None:
    ours, reference = _params(scale), _params(scale)
    # torch's inf norm refuses the empty (0, 4) tensor, which an empty shard can have
    non_empty = [p for p in reference if p.numel()]
    expected = torch.nn.utils.clip_grad_norm_(non_empty, 1.0, norm_type=norm_type)
    norm = clip_grad_norm_(ours[:2], ours[2:], 1.0, norm_type=norm_type)
    torch.testing.assert_close(norm, expected)
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine.grad, theirs.grad)
    if scale < 0.1:  # nothing to clip: gradients unchanged
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours, _params(scale)))


def test_parameters_without_gradient_are_skipped() -> None:
    params = _params(1.0)
    params[0].grad = None
    expected = torch.sqrt(sum(p.grad.square().sum() for p in params[1:]))
    torch.testing.assert_close(global_grad_norm(params[:2], params[2:]), expected)
    assert float(global_grad_norm([], [])) == 0.0


def test_float64_gradients_keep_float64() -> None:
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    norm = global_grad_norm([p], [])
    assert norm.dtype == torch.float64 and float(norm) == 5.0


def test_unsupported_norm_type() -> None:
    with pytest.raises(ValueError, match="norm_type must be 2 or inf, got 1.0"):
        global_grad_norm(_params(1.0), [], norm_type=1.0)
