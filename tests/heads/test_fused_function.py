"""The functional fused SphereFace2 loss: gradcheck, chunk_loss semantics, sharding, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sphereface2.heads.fused_function import (
    AUTO_MIN_ENTRIES,
    fused_sphereface2_loss,
    fused_sphereface2_loss_sum,
    prefer_fused,
)
from sphereface2.heads.sphereface2 import sphereface2_loss
from sphereface2.heads.sphereface2_math import chunk_loss

PAPER_M = {"C": 0.4, "A": 0.5, "M": 1.7}


def inputs(batch=5, num_classes=9, dim=4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(batch, dim, generator=gen, dtype=torch.float64), dim=1)
    w = F.normalize(torch.randn(num_classes, dim, generator=gen, dtype=torch.float64), dim=1)
    b = torch.tensor(-0.7, dtype=torch.float64)
    return x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)


def hp(margin_type, gradient="full"):
    return {"margin_type": margin_type, "lam": 0.7, "r": 5.0, "m": PAPER_M[margin_type],
            "t": 3.0, "gradient": gradient}  # fmt: skip


# Positives outside [0, 9) belong to another shard: only negative terms count for them.
POSITIVES = torch.tensor([4, -1, 8, 9, 0])


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_gradcheck_full_gradient(margin_type):
    x, w, b = inputs()

    def fn(x_, w_, b_):
        return fused_sphereface2_loss_sum(
            x_, w_, b_, POSITIVES, **hp(margin_type), scale=0.8, chunk_size=4
        )

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_equals_chunk_loss_sum_with_positives_in_other_shards(margin_type, gradient):
    x, w, b = inputs()
    expected = 0.8 * chunk_loss(x @ w.t(), POSITIVES, b, **hp(margin_type, gradient)).sum()
    expected_grads = torch.autograd.grad(expected, (x, w, b))
    loss, stats = fused_sphereface2_loss_sum(
        x, w, b, POSITIVES, **hp(margin_type, gradient), scale=0.8, chunk_size=2,
        return_stats=True,
    )  # fmt: skip
    grads = torch.autograd.grad(loss, (x, w, b))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    for actual, want in zip(grads, expected_grads):
        torch.testing.assert_close(actual, want, rtol=1e-10, atol=1e-13)
    cos = (x @ w.t()).detach()
    inside = [(n, int(p)) for n, p in enumerate(POSITIVES) if 0 <= p < 9]
    pos_sum = sum(cos[n, p].item() for n, p in inside)
    assert stats["num_positives"].item() == len(inside) == 3
    assert stats["pos_cos_sum"].item() == pytest.approx(pos_sum, rel=1e-12)
    assert stats["neg_cos_sum"].item() == pytest.approx(cos.sum().item() - pos_sum, rel=1e-12)


@pytest.mark.parametrize("gradient", ["full", "detached"])
def test_shards_add_up_to_the_whole(gradient):
    """What a class-sharded head does: local proxies, labels shifted by the shard start."""
    x, w, b = inputs(batch=6, num_classes=10)
    labels = torch.tensor([0, 9, 4, 5, 7, 3])
    whole = fused_sphereface2_loss_sum(x, w, b, labels, **hp("A", gradient), scale=2.0)
    whole_grads = torch.autograd.grad(whole, (x, w, b))
    total = sum(
        fused_sphereface2_loss_sum(
            x, w[start:stop], b, labels - start, **hp("A", gradient), scale=2.0, chunk_size=3
        )
        for start, stop in ((0, 4), (4, 5), (5, 10))
    )
    grads = torch.autograd.grad(total, (x, w, b))
    assert total.item() == pytest.approx(whole.item(), rel=1e-12)
    for actual, want in zip(grads, whole_grads):
        torch.testing.assert_close(actual, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("t", [3.0, 1.0, 0.5])
@pytest.mark.parametrize("gradient", ["full", "detached"])
def test_cosines_beyond_one_follow_the_clamp_of_g(gradient, t):
    """Non-unit features give cosines outside [-1, 1]: g clamps them, with zero slope."""
    x, w, b = inputs(batch=4, num_classes=6)
    with torch.no_grad():
        x[0] = 1.001 * w[2]  # a negative entry at 1.001
        x[1] = -1.001 * w[3]  # a negative entry at -1.001
        x[2] = 1.001 * w[5]  # the positive entry at 1.001
    positives = torch.tensor([0, 1, 5, 4])
    spec = hp("C", gradient) | {"t": t}
    expected = chunk_loss(x @ w.t(), positives, b, **spec).sum()
    expected_grads = torch.autograd.grad(expected, (x, w, b))
    loss = fused_sphereface2_loss_sum(x, w, b, positives, **spec, chunk_size=4)
    grads = torch.autograd.grad(loss, (x, w, b))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    for actual, want in zip(grads, expected_grads):
        torch.testing.assert_close(actual, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_mean_form_equals_sphereface2_loss(margin_type):
    gen = torch.Generator().manual_seed(1)
    emb = 4.0 * torch.randn(5, 4, generator=gen, dtype=torch.float64)
    _, w, b = inputs()
    labels = torch.tensor([8, 0, 3, 3, 5])
    kwargs = {"margin_type": margin_type, "m": PAPER_M[margin_type], "r": 30.0, "lw": 50.0}
    e1 = emb.clone().requires_grad_(True)
    e2 = emb.clone().requires_grad_(True)
    expected = sphereface2_loss(e1, w, b, labels, **kwargs)
    actual = fused_sphereface2_loss(e2, w, b, labels, **kwargs, chunk_size=5)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-12)
    expected.backward()
    actual.backward()
    torch.testing.assert_close(e2.grad, e1.grad, rtol=1e-10, atol=1e-13)


def test_a_float_bias_and_no_grad_anywhere():
    x, w, _ = inputs()
    expected = chunk_loss(x @ w.t(), POSITIVES, -0.7, **hp("M")).sum()
    with torch.no_grad():
        loss = fused_sphereface2_loss_sum(x, w, -0.7, POSITIVES, **hp("M"))
    assert loss.grad_fn is None
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_a_second_backward_through_one_forward_recomputes():
    x, w, b = inputs()
    loss = fused_sphereface2_loss_sum(x, w, b, POSITIVES, **hp("C"))
    first = torch.autograd.grad(loss, (x, w, b), retain_graph=True)
    second = torch.autograd.grad(3.0 * loss, (x, w, b))
    for a, c in zip(first, second):
        torch.testing.assert_close(c, 3.0 * a, rtol=1e-12, atol=0.0)


def test_changing_the_proxies_before_backward_is_caught():
    x, w, b = inputs()
    loss = fused_sphereface2_loss_sum(x, w, b, POSITIVES, **hp("C"))
    loss.backward(retain_graph=True)
    with torch.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bad_arguments_are_named():
    x, w, b = inputs()
    with pytest.raises(ValueError, match="x_hat .B, d. and weight .K, d. must agree in d"):
        fused_sphereface2_loss_sum(x[:, :3], w, b, POSITIVES, **hp("C"))
    with pytest.raises(ValueError, match=r"positive_index must have shape \(5,\), got \(4,\)"):
        fused_sphereface2_loss_sum(x, w, b, POSITIVES[:4], **hp("C"))
    with pytest.raises(ValueError, match="margin_type must be one of"):
        fused_sphereface2_loss_sum(x, w, b, POSITIVES, **(hp("C") | {"margin_type": "B"}))
    with pytest.raises(ValueError, match="gradient must be one of"):
        fused_sphereface2_loss_sum(x, w, b, POSITIVES, **(hp("C") | {"gradient": "none"}))
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None, got 0"):
        fused_sphereface2_loss_sum(x, w, b, POSITIVES, **hp("C"), chunk_size=0)


def test_prefer_fused():
    small, large = torch.zeros(256, 2), torch.zeros(256, 2)
    assert prefer_fused("fused", small, 2) and not prefer_fused("plain", large, 10**6)
    assert prefer_fused("auto", large, AUTO_MIN_ENTRIES // 256)
    assert not prefer_fused("auto", small, AUTO_MIN_ENTRIES // 256 - 1)
    assert not prefer_fused("auto", "not a tensor", 10**6)
    assert not prefer_fused("auto", torch.zeros(10**6), 10**6)
    with pytest.raises(ValueError, match="implementation must be one of 'auto', 'plain', 'fused'"):
        prefer_fused("fast", small, 2)
