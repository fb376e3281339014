"""Pieces of the fused head: closed-form logit slopes and the chunk size from a budget."""

from __future__ import annotations

import math

import pytest
import torch

from sphereface2.heads.fused_chunk_loop import LossSpec, _NegativeLogits
from sphereface2.heads.memory_budget import (
    MIN_CHUNK,
    WORK_BUFFERS,
    bytes_per_class,
    choose_chunk_size,
)
from sphereface2.heads.sphereface2_math import negative_logit, positive_logit
from sphereface2.heads.sphereface2_slopes import (
    negative_value_and_slope,
    positive_value_and_slope,
)

# The whole range, the eps clamp of arccos at both ends, and cosines just beyond +-1.
GRID = torch.cat(
    [
        torch.linspace(-0.999, 0.999, 401, dtype=torch.float64),
        torch.tensor(
            [-1.0 - 1e-9, -1.0, -1.0 + 1e-7, 1.0 - 1e-7, 1.0, 1.0 + 1e-9], dtype=torch.float64
        ),
        torch.tensor([-1.0 + 1e-6, 1.0 - 1e-6], dtype=torch.float64),
    ]
)
CASES = [("C", 0.4), ("A", 0.5), ("A", 2.0), ("M", 1.7), ("M", 0.6), ("M", 3.5)]


@pytest.mark.parametrize("t", [3.0, 1.0, 2.0, 2.5])
@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize(("margin_type", "m"), CASES)
def test_slopes_equal_autograd_of_the_logits(margin_type, m, gradient, t):
    spec = {"margin_type": margin_type, "r": 7.0, "m": m, "t": t, "gradient": gradient}
    for analytic, reference in (
        (positive_value_and_slope, positive_logit),
        (negative_value_and_slope, negative_logit),
    ):
        cos = GRID.clone().requires_grad_(True)
        logit = reference(cos, 0.0, **spec)
        (expected_slope,) = torch.autograd.grad(logit.sum(), cos)
        value, slope = analytic(GRID, **spec)
        torch.testing.assert_close(value, logit.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(slope, expected_slope, rtol=1e-10, atol=1e-12)


def test_slopes_past_pi_are_r_and_zero_past_the_cosine_clamp():
    spec = {"r": 7.0, "t": 3.0, "gradient": "full"}
    cos = torch.tensor([-0.9, 0.9])
    value, slope = positive_value_and_slope(cos, margin_type="A", m=2.0, **spec)
    assert slope[0] == 7.0 and slope[1] != 7.0  # theta + m > pi only for the first
    assert value[0].item() == pytest.approx(7.0 * (-0.9 - math.cos(math.pi - 2.0) - 1.0))
    beyond = torch.tensor([1.0 + 1e-6, -1.0 - 1e-6], dtype=torch.float64)
    _, slope = negative_value_and_slope(beyond, margin_type="C", m=0.4, **spec)
    assert torch.all(slope == 0.0)


def test_bad_margin_type_and_gradient_mode():
    c = torch.zeros(2)
    with pytest.raises(ValueError, match="margin_type must be 'C', 'A' or 'M', got 'X'"):
        positive_value_and_slope(c, margin_type="X", r=1.0, m=0.1, t=1.0, gradient="full")
    with pytest.raises(ValueError, match="margin_type must be 'C', 'A' or 'M', got 'X'"):
        negative_value_and_slope(c, margin_type="X", r=1.0, m=0.1, t=1.0, gradient="full")
    with pytest.raises(ValueError, match="gradient must be 'full' or 'detached', got 'x'"):
        negative_value_and_slope(c, margin_type="C", r=1.0, m=0.1, t=1.0, gradient="x")


def test_chunk_size_from_the_budget():
    per_class = bytes_per_class(256, 4, 4, 512)
    assert per_class == WORK_BUFFERS * 256 * 4
    assert choose_chunk_size(10**6, 256, embedding_dim=512, budget_bytes=1000 * per_class) == 1000
    # Clipped to [MIN_CHUNK, K].
    assert choose_chunk_size(10**6, 256, embedding_dim=512, budget_bytes=1) == MIN_CHUNK
    assert choose_chunk_size(100, 256, embedding_dim=512, budget_bytes=1) == 100
    assert choose_chunk_size(5000, 1, embedding_dim=512, budget_bytes=2**30) == 5000
    # Low-precision products add their own buffers and the cast proxies.
    mixed = bytes_per_class(256, 4, 2, 512)
    assert mixed == per_class + 2 * 256 * 2 + 512 * 2
    assert (
        choose_chunk_size(10**6, 256, embedding_dim=512, matmul_itemsize=2, budget_bytes=mixed * 7)
        == MIN_CHUNK
    )
    assert (
        choose_chunk_size(10**6, 2, embedding_dim=512, matmul_itemsize=2, budget_bytes=mixed * 7)
        > 7
    )


def test_explicit_chunk_size_and_errors():
    assert choose_chunk_size(50, 256, embedding_dim=8, chunk_size=7) == 7
    assert choose_chunk_size(50, 256, embedding_dim=8, chunk_size=1000) == 50
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive int or None"):
            choose_chunk_size(50, 256, embedding_dim=8, chunk_size=bad)
    with pytest.raises(ValueError, match="budget_bytes must be a positive int, got 0"):
        choose_chunk_size(50, 256, embedding_dim=8, budget_bytes=0)
    with pytest.raises(ValueError, match="need num_classes >= 1 and batch >= 1, got 0 and 3"):
        choose_chunk_size(0, 3, embedding_dim=8)


@pytest.mark.parametrize("t", [3.0, 2.0, 1.0, 2.5])
def test_the_always_clamp_path_of_other_devices_matches_the_checked_cpu_path(t):
    """Off the CPU every chunk is clamped and masked; the result must be the same."""
    spec = LossSpec("C", 0.7, 40.0, 0.4, t, "full")
    bias = torch.tensor(-1.0, dtype=torch.float64)
    for cos in (
        torch.tensor([[0.3, -1.0 - 1e-7, 1.0], [1.0 + 2e-7, 0.0, -0.5]], dtype=torch.float64),
        torch.tensor([[0.3, -0.2, 1.0], [-1.0, 0.0, -0.5]], dtype=torch.float64),
    ):
        results = []
        for check_range in (True, False):
            logits_of = _NegativeLogits(spec, bias, want_slope=True)
            logits_of.check_range = check_range
            q, power, logits = (torch.empty_like(cos) for _ in range(3))
            power_out, inside = logits_of(cos, q, power, logits)
            inside = torch.ones_like(cos, dtype=torch.bool) if inside is None else inside
            results.append((logits.clone(), power_out, inside))
        (l1, p1, m1), (l2, p2, m2) = results
        assert torch.equal(l1, l2) and torch.equal(m1, m2)
        assert (p1 is None and p2 is None) or torch.equal(p1, p2)
        assert torch.equal(m1, (cos >= -1) & (cos <= 1))
