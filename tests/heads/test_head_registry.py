"""Building heads by name, and the call contract every registered head keeps."""

from __future__ import annotations

import pytest
import torch

from sphereface2.heads import (
    HEADS,
    ArcFaceHead,
    CosFaceHead,
    FusedSphereFace2Head,
    NormFaceHead,
    SoftmaxHead,
    SphereFace2Head,
    SphereFaceHead,
    build_head,
)
from sphereface2.registry import UnknownNameError

EXPECTED = {
    "softmax": SoftmaxHead,
    "normface": NormFaceHead,
    "cosface": CosFaceHead,
    "arcface": ArcFaceHead,
    "sphereface": SphereFaceHead,
    "sphereface2": SphereFace2Head,
    "sphereface2_fused": FusedSphereFace2Head,
}


def test_every_head_is_registered_under_its_name():
    assert HEADS.names() == sorted(EXPECTED)
    for name, cls in EXPECTED.items():
        head = build_head(name, num_classes=7, embedding_dim=3)
        assert type(head) is cls
        assert (head.num_classes, head.embedding_dim) == (7, 3)


def test_build_head_passes_parameters():
    head = build_head("sphereface2", 20, 8, margin_type="M", lam=0.6, r=30, m=1.7, t=2, lw=50)
    assert (head.margin_type, head.lam, head.r, head.m, head.t, head.lw) == (
        "M",
        0.6,
        30.0,
        1.7,
        2.0,
        50.0,
    )
    assert build_head("arcface", 5, 4, s=64.0, gradient="detached").s == 64.0
    assert build_head("softmax", 5, 4, validate=False).validate is False


def test_unknown_head_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown head 'arcfce'; valid names: arcface, "):
        build_head("arcfce", 5, 4)


def test_unknown_parameter_lists_accepted_ones():
    with pytest.raises(
        ValueError, match="head 'cosface' got unknown parameter.s. lam, r; it accepts: s, m"
    ):
        build_head("cosface", 5, 4, lam=0.7, r=40)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_call_contract(name):
    head = build_head(name, num_classes=9, embedding_dim=6)
    x = torch.randn(5, 6, requires_grad=True)
    y = torch.tensor([0, 8, 3, 3, 1])
    loss = head(x, y)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert head.weight.shape == (9, 6) and head.weight.grad is not None
    again, stats = head(x, y, return_stats=True)
    torch.testing.assert_close(again, loss)
    assert {"pos_cos", "neg_cos"} <= set(stats)
    for value in stats.values():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
    assert "num_classes=9, embedding_dim=6" in repr(head)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_head_checks_its_batch(name):
    head = build_head(name, num_classes=4, embedding_dim=3)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=rf"{name}: label 4 at batch index 1 is outside \[0, 4\)"):
        head(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=f"{name}: embeddings have dimension 2"):
        head(x[:, :2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=f"{name}: labels must be a 1-D integer tensor"):
        head(x, torch.tensor([True, False]))
    x[0, 2] = float("nan")
    with pytest.raises(ValueError, match=f"{name}: embedding at batch index 0 has a non-finite"):
        head(x, torch.tensor([0, 1]))
