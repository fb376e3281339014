"""The one definition of SphereFace2's margin functions: value and slope agree, the negative
margin, and the fused pass at q = 0 for t < 1."""

from __future__ import annotations

import math

import pytest
import torch

from sphereface2.heads import build_head
from sphereface2.heads import sphereface2_margins as margins
from sphereface2.heads.sphereface2_params import SphereFace2Params

GRID = torch.cat(
    [
        torch.linspace(-1.0, 1.0, 201, dtype=torch.float64),
        torch.tensor([-1.0 - 1e-9, 1.0 + 1e-9], dtype=torch.float64),
    ]
)


def test_negative_margin_is_m_for_c_only():
    assert margins.negative_margin(SphereFace2Params("C", m=0.3)) == 0.3
    assert margins.negative_margin(SphereFace2Params("A", m=0.5)) == 0.0
    assert margins.negative_margin("M", 1.7) == 0.0
    with pytest.raises(ValueError, match="margin_type must be 'C', 'A' or 'M', got 'X'"):
        margins.negative_margin("X", 0.1)


@pytest.mark.parametrize("t", [0.5, 2.5, 4.0])
@pytest.mark.parametrize(("margin_type", "m"), [("C", 0.4), ("A", 0.5), ("M", 1.7)])
def test_with_slope_other_t_keeps_the_plain_value_and_gives_its_derivative(margin_type, m, t):
    """For t outside {1, 2, 3} both forms take q.pow(t): the same bits."""
    for fn in (margins.positive_value, margins.negative_value):
        cos = GRID.clone().requires_grad_(True)
        value = fn(cos, margin_type, m, t)
        (autograd_slope,) = torch.autograd.grad(value.sum(), cos)
        value2, slope = fn(GRID, margin_type, m, t, with_slope=True)
        assert torch.equal(value2, value.detach())
        inner = GRID.abs() < 1.0  # g'(+-1) is inf or 0 for t < 1: compare inside
        torch.testing.assert_close(slope[inner], autograd_slope[inner], rtol=1e-9, atol=1e-9)


def test_fused_pass_is_finite_at_q_zero_for_t_below_one():
    """A sample exactly opposite its proxy: q = 0, where q^(t-1) q would be inf * 0."""
    torch.manual_seed(0)
    plain = build_head("sphereface2", 5, 4, t=0.5, implementation="plain").double()
    fused = build_head("sphereface2_fused", 5, 4, t=0.5, chunk_size=2).double()
    fused.load_state_dict(plain.state_dict())
    labels = torch.tensor([0, 3])
    x = torch.stack([-plain.weight.detach()[0], plain.weight.detach()[1]])
    loss_p, loss_f = plain(x, labels), fused(x, labels)
    assert math.isfinite(loss_f.item())
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-12, atol=1e-12)


def test_the_slopes_module_is_an_alias():
    from sphereface2.heads import sphereface2_slopes

    assert sphereface2_slopes is margins
    assert sphereface2_slopes.positive_value_and_slope is margins.positive_value_and_slope
