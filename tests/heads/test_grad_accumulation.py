"""Gradient accumulation into an existing proxy gradient: in place, and bit for bit the sum
that autograd forms when the head returns a fresh gradient (``g1 + g2``)."""

from __future__ import annotations

import pytest
import torch

from sphereface2.heads import build_head
from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
from sphereface2.heads.sharded import build_sharded_head

K, D, B = 97, 16, 12


def _batches(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(B, D, generator=gen), torch.randint(0, K, (B,), generator=gen))
        for _ in range(3)
    ]


def _head(kind: str, margin_type: str = "C", dtype=torch.float32):
    torch.manual_seed(1)
    if kind == "fused":
        head = FusedSphereFace2Head(K, D, margin_type=margin_type, chunk_size=10)
    elif kind == "plain":
        head = build_head("sphereface2", num_classes=K, embedding_dim=D, margin_type=margin_type)
        head.implementation = "plain"
    else:  # a world of one: the sharded head on the fused pass
        head = build_sharded_head(
            "sphereface2", K, D, None, margin_type=margin_type, implementation="fused",
            chunk_size=10,
        )  # fmt: skip
    return head.to(dtype)


def _separate_grads(kind, batches, scales, margin_type, dtype):
    """Each micro-batch's gradient alone (fresh .grad), summed afterwards by autograd's rule."""
    head = _head(kind, margin_type, dtype)
    total = None
    for (x, y), scale in zip(batches, scales):
        head.zero_grad(set_to_none=True)
        (head(x.to(dtype), y) * scale).backward()
        total = head.weight.grad.clone() if total is None else total + head.weight.grad
    return total


@pytest.mark.parametrize("kind", ["fused", "plain", "sharded"])
@pytest.mark.parametrize("margin_type", ["C", "A"])
@pytest.mark.parametrize("scales", [(1.0, 1.0, 1.0), (0.5, 0.25, 3.0)])
def test_accumulated_proxy_gradient_equals_the_sum_bit_for_bit(kind, margin_type, scales):
    batches = _batches()
    head = _head(kind, margin_type)
    for (x, y), scale in zip(batches, scales):
        (head(x, y) * scale).backward()
    expected = _separate_grads(kind, batches, scales, margin_type, torch.float32)
    assert torch.equal(head.weight.grad, expected)


@pytest.mark.parametrize("kind", ["fused", "sharded"])
def test_existing_gradient_is_updated_in_place(kind):
    (x, y), *_ = _batches()
    head = _head(kind)
    head.weight.grad = torch.ones_like(head.weight)
    grad = head.weight.grad
    head(x, y).backward()
    assert head.weight.grad is grad  # accumulated into, not replaced
    expected = torch.ones_like(grad) + _separate_grads(kind, [(x, y)], [1.0], "C", torch.float32)
    assert torch.equal(grad, expected)


def test_gradient_dropped_between_forward_and_backward_is_rebuilt():
    (x, y), *_ = _batches()
    head = _head("fused")
    head.weight.grad = torch.ones_like(head.weight)
    loss = head(x, y)
    head.zero_grad(set_to_none=True)
    loss.backward()
    expected = _separate_grads("fused", [(x, y)], [1.0], "C", torch.float32)
    assert torch.equal(head.weight.grad, expected)


def test_embedding_and_bias_gradients_unchanged_by_deferral():
    (x, y), *_ = _batches()
    ref = _head("fused")
    xr = x.clone().requires_grad_()
    ref(xr, y).backward()
    head = _head("fused")
    head.weight.grad = torch.zeros_like(head.weight)
    xa = x.clone().requires_grad_()
    head(xa, y).backward()
    assert torch.equal(xa.grad, xr.grad)
    assert torch.equal(head.bias.grad, ref.bias.grad)
