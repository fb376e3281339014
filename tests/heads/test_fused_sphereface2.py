"""The fused SphereFace2 head against the plain head: loss, every gradient, stats, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
from sphereface2.heads.registry import HEADS, build_head
from sphereface2.heads.sphereface2 import SphereFace2Head
from sphereface2.heads.sphereface2_math import bias_init

PAPER_M = {"C": 0.4, "A": 0.5, "M": 1.7}
K, D = 11, 5
# Chunks of 4 classes are [0, 4), [4, 8), [8, 11): the middle one holds no positive.
LABELS = torch.tensor([0, 2, 9, 10, 2, 3])


def pair(margin_type, gradient, chunk_size, dtype=torch.float64, num_classes=K, dim=D, **hp):
    """A plain head and a fused head with identical parameters."""
    params = {"margin_type": margin_type, "m": PAPER_M[margin_type], "gradient": gradient}
    params.update(hp)
    plain = SphereFace2Head(num_classes, dim, **params).to(dtype)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(7)
        plain.weight.copy_(F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1))
    fused = FusedSphereFace2Head(num_classes, dim, chunk_size=chunk_size, **params).to(dtype)
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def run(head, x, y, **kwargs):
    """Loss, gradients (embeddings, weight, bias) and stats of one forward/backward."""
    head.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    loss, stats = head(x, y, return_stats=True, **kwargs)
    loss.backward()
    return [loss.detach(), x.grad, head.weight.grad, head.bias.grad], stats


def assert_relative(actual, expected, rel):
    """max |actual - expected| <= rel * max |expected| (a norm-wise relative error)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    err = (actual - expected).abs().max().item()
    assert err <= rel * max(expected.abs().max().item(), 1e-30), (err, expected)


HYPER = [
    {},  # the paper's defaults: r = 40 and b0 push logits past softplus's threshold of 20
    {"t": 1.0, "lam": 0.4, "r": 3.0},
    {"t": 2.0, "r": 8.0},
    {"t": 2.5, "r": 12.0, "lw": 50.0},
]


@pytest.mark.parametrize("hp", HYPER)
@pytest.mark.parametrize("chunk_size", [1, 4, K, 64])
@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_fused_equals_plain_in_float64(margin_type, gradient, chunk_size, hp):
    plain, fused = pair(margin_type, gradient, chunk_size, **hp)
    x = 3.0 * torch.randn(len(LABELS), D, dtype=torch.float64)
    expected, expected_stats = run(plain, x, LABELS)
    actual, actual_stats = run(fused, x, LABELS)
    for a, e in zip(actual, expected):
        assert_relative(a, e, 1e-10)
    assert actual_stats.keys() == expected_stats.keys() == {"pos_cos", "neg_cos", "bias"}
    for name, value in actual_stats.items():
        assert value.dim() == 0 and not value.requires_grad
        assert value.item() == pytest.approx(expected_stats[name].item(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_fused_equals_plain_in_float32(margin_type, gradient):
    num_classes, dim = 301, 24
    plain, fused = pair(margin_type, gradient, 64, torch.float32, num_classes, dim)
    x = torch.randn(16, dim)
    y = torch.randint(0, num_classes, (16,))
    expected, _ = run(plain, x, y)
    actual, _ = run(fused, x, y)
    for a, e in zip(actual, expected):
        assert_relative(a, e, 1e-5)


def test_default_chunk_size_and_many_chunks_agree():
    plain, fused = pair("C", "full", None, num_classes=700, dim=6)
    other = FusedSphereFace2Head(700, 6, chunk_size=3).double()
    other.load_state_dict(plain.state_dict())
    x = torch.randn(9, 6, dtype=torch.float64)
    y = torch.tensor([0, 699, 350, 3, 4, 5, 698, 1, 2])
    expected, _ = run(plain, x, y)
    for head in (fused, other):
        actual, _ = run(head, x, y)
        for a, e in zip(actual, expected):
            assert_relative(a, e, 1e-10)


def test_gradients_accumulate_over_two_backward_passes():
    plain, fused = pair("A", "full", 4)
    x1, x2 = torch.randn(6, D, dtype=torch.float64), torch.randn(6, D, dtype=torch.float64)
    for head in (plain, fused):
        head.zero_grad(set_to_none=True)
        head(x1, LABELS).backward()
        head(x2, LABELS.flip(0)).backward()
    assert_relative(fused.weight.grad, plain.weight.grad, 1e-10)
    assert_relative(fused.bias.grad, plain.bias.grad, 1e-10)
    # And the sum really is of two different gradients.
    single, _ = run(fused, x1, LABELS)
    assert not torch.allclose(plain.weight.grad, single[2])


def test_two_forwards_then_one_backward_and_a_scaled_loss():
    plain, fused = pair("M", "full", 4)
    x = torch.randn(6, D, dtype=torch.float64)
    grads = []
    for head in (plain, fused):
        head.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        (2.5 * head(xx, LABELS) - head(xx.flip(1), LABELS) / 3.0).backward()
        grads.append((xx.grad, head.weight.grad, head.bias.grad))
    for a, e in zip(grads[1], grads[0]):
        assert_relative(a, e, 1e-10)


def test_the_proxy_gradient_buffer_becomes_grad_without_a_copy():
    _, fused = pair("C", "full", 4)
    loss = fused(torch.randn(6, D, dtype=torch.float64), LABELS)
    assert loss.grad_fn.grad_weight.shape == fused.weight.shape
    address = loss.grad_fn.grad_weight.data_ptr()  # keep no reference: it would force a copy
    loss.backward()
    assert fused.weight.grad.data_ptr() == address


def test_no_grad_forward_gives_the_loss_only():
    plain, fused = pair("C", "detached", 4)
    x = torch.randn(6, D, dtype=torch.float64)
    with torch.no_grad():
        loss, stats = fused(x, LABELS, return_stats=True)
        expected, expected_stats = plain(x, LABELS, return_stats=True)
    assert loss.grad_fn is None
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert stats["neg_cos"].item() == pytest.approx(expected_stats["neg_cos"].item(), rel=1e-12)


def test_frozen_proxies_get_no_gradient_and_embeddings_still_do():
    plain, fused = pair("C", "full", 4)
    x = torch.randn(6, D, dtype=torch.float64)
    for head in (plain, fused):
        head.weight.requires_grad_(False)
    expected, _ = run(plain, x, LABELS)
    actual, _ = run(fused, x, LABELS)
    assert actual[2] is None
    assert_relative(actual[1], expected[1], 1e-10)
    assert_relative(actual[3], expected[3], 1e-10)


def test_autocast_bfloat16_products_with_float32_elementwise_maths():
    plain, fused = pair("A", "full", 4, torch.float32)
    x = torch.randn(6, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual, _ = run(fused, x, LABELS)
        expected, _ = run(plain, x, LABELS)
    assert actual[0].dtype == torch.float32
    assert actual[2].dtype == torch.float32 and torch.isfinite(actual[2]).all()
    assert actual[0].item() == pytest.approx(expected[0].item(), rel=0.05)
    reference, _ = run(fused, x, LABELS)
    assert actual[0].item() == pytest.approx(reference[0].item(), rel=0.05)


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_cosines_of_exactly_one_keep_finite_gradients_in_float32(margin_type):
    plain, fused = pair(margin_type, "full", 4, torch.float32)
    x = plain.weight.detach()[[0, 1, 2, 5]].clone()  # cos == 1 to the own and another proxy
    y = torch.tensor([0, 1, 2, 4])
    expected, _ = run(plain, x, y)
    actual, _ = run(fused, x, y)
    for a, e in zip(actual, expected):
        assert torch.isfinite(a).all()
        assert_relative(a, e, 1e-4)


def test_the_head_trains():
    gen = torch.Generator().manual_seed(0)
    num_classes, dim = 12, 8
    centres = F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
    labels = torch.arange(num_classes).repeat(4)
    inputs = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=gen)
    backbone = torch.nn.Linear(dim, dim)
    head = FusedSphereFace2Head(num_classes, dim, r=10.0, chunk_size=5)
    optimiser = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.5)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = head(backbone(inputs), labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_registered_with_the_plain_heads_parameters_and_init():
    head = build_head("sphereface2_fused", 50, 8, margin_type="M", m=1.7, chunk_size=16)
    assert type(head) is FusedSphereFace2Head and HEADS.get("sphereface2_fused") is type(head)
    plain = SphereFace2Head(50, 8, margin_type="M", m=1.7)
    assert head.state_dict().keys() == plain.state_dict().keys() == {"weight", "bias"}
    assert head.bias.item() == pytest.approx(bias_init(50, "M", 0.7, 40.0, 1.7, 3.0), rel=1e-6)
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(50))
    assert "chunk_size=16" in repr(head) and "margin_type='M'" in repr(head)


def test_validation_errors_name_the_fused_head():
    head = FusedSphereFace2Head(K, D)
    with pytest.raises(ValueError, match=r"sphereface2_fused: label 11 at batch index 1"):
        head(torch.randn(2, D), torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="sphereface2_fused: embeddings have dimension 4"):
        head(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sphereface2_fused: margin_type must be one of"):
        FusedSphereFace2Head(K, D, margin_type="X")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="sphereface2_fused: chunk_size must be a positive"):
            FusedSphereFace2Head(K, D, chunk_size=bad)
