"""Softmax-family baselines against loop references, gradcheck, margin shapes and errors."""

from __future__ import annotations

import math

import heads_loop_reference as ref
import pytest
import torch
import torch.nn.functional as F

from sphereface2.heads import (
    ArcFaceHead,
    CosFaceHead,
    NormFaceHead,
    SoftmaxHead,
    SphereFaceHead,
)
from sphereface2.heads.base import cosines
from sphereface2.heads.margin_softmax import (
    arcface_target,
    margin_cross_entropy,
    sphereface_psi,
    sphereface_target,
)

B, K, D = 4, 6, 5
LABELS = torch.tensor([1, 0, 5, 1])


def batch(seed: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.7 * torch.randn(B, D, generator=gen, dtype=torch.float64)


def prepare(head: torch.nn.Module) -> torch.nn.Module:
    head = head.double()
    with torch.no_grad():
        head.weight.copy_(F.normalize(torch.randn(K, D, dtype=torch.float64), dim=1))
    return head


def loop_target(name: str, s: float, m: float, mode: str = "full"):
    """The label column's logit as a function of cos_y, written from the equations."""
    if name == "normface":
        return lambda c: s * c
    if name == "cosface":
        return lambda c: s * (c - m)
    if name == "arcface":
        return lambda c: ref.arcface_target(c, s, m, mode)
    return lambda c: s * ref.sphereface_psi(math.acos(c), m)


# name, constructor kwargs (small s so the softmax is not saturated), gradient mode
NORMALISED = [
    ("normface", NormFaceHead, {"s": 4.0}, "full"),
    ("cosface", CosFaceHead, {"s": 4.0, "m": 0.35}, "full"),
    ("arcface", ArcFaceHead, {"s": 4.0, "m": 0.5}, "full"),
    ("arcface", ArcFaceHead, {"s": 4.0, "m": 0.5, "gradient": "detached"}, "detached"),
    ("sphereface", SphereFaceHead, {"s": 4.0, "m": 1.5, "gradient": "full"}, "full"),
    ("sphereface", SphereFaceHead, {"s": 4.0, "m": 1.5}, "detached"),
    ("sphereface", SphereFaceHead, {"s": 3.0, "m": 4.0, "gradient": "full"}, "full"),
]


@pytest.mark.parametrize(("name", "cls", "kwargs", "mode"), NORMALISED)
def test_normalised_heads_match_loops(name, cls, kwargs, mode):
    head = prepare(cls(K, D, **kwargs))
    x = batch().requires_grad_(True)
    loss = head(x, LABELS)
    loss.backward()
    X, W, labels = x.tolist(), head.weight.tolist(), LABELS.tolist()
    target = loop_target(name, head.s, getattr(head, "m", 0.0), mode)

    def loop(X_, W_):
        return ref.ce_loss(X_, W_, labels, head.s, target)

    assert loss.item() == pytest.approx(loop(X, W), rel=1e-12)
    if mode == "full":
        ex, ew = ref.finite_difference(loop, X, W)
        tol = {"rtol": 1e-5, "atol": 1e-7}
    else:
        ex, ew = ref.ce_detached_grads(X, W, labels, head.s, target)
        tol = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(x.grad, torch.tensor(ex, dtype=torch.float64), **tol)
    torch.testing.assert_close(head.weight.grad, torch.tensor(ew, dtype=torch.float64), **tol)


def test_softmax_head_matches_loop():
    head = SoftmaxHead(K, D).double()
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-0.5, 0.5, K, dtype=torch.float64))
    x = batch().requires_grad_(True)
    loss = head(x, LABELS)
    loss.backward()
    X, W, b, labels = x.tolist(), head.weight.tolist(), head.bias.tolist(), LABELS.tolist()

    def loop(X_, W_, b_):
        return ref.linear_ce_loss(X_, W_, b_, labels)

    assert loss.item() == pytest.approx(loop(X, W, b), rel=1e-12)
    ex, ew, eb = ref.finite_difference(loop, X, W, b)
    tol = {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(x.grad, torch.tensor(ex, dtype=torch.float64), **tol)
    torch.testing.assert_close(head.weight.grad, torch.tensor(ew, dtype=torch.float64), **tol)
    torch.testing.assert_close(head.bias.grad, torch.tensor(eb, dtype=torch.float64), **tol)


def test_softmax_head_is_a_plain_linear_layer():
    head = SoftmaxHead(K, D)
    assert head.weight.shape == (K, D) and head.bias.shape == (K,)
    assert torch.count_nonzero(head.bias) == 0
    with torch.no_grad():
        head.weight.mul_(5.0)
    norms = head.weight.norm(dim=1).clone()
    head(batch().float(), LABELS)
    torch.testing.assert_close(head.weight.norm(dim=1), norms)  # never re-projected


TARGETS = {
    "normface": lambda c: 4.0 * c,
    "cosface": lambda c: 4.0 * (c - 0.35),
    "arcface": lambda c: arcface_target(c, 4.0, 0.5),
    "sphereface": lambda c: sphereface_target(c, 4.0, 1.5, "full"),
    "sphereface_m4": lambda c: sphereface_target(c, 4.0, 4.0, "full"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_gradcheck_margin_cross_entropy(name):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = F.normalize(torch.randn(5, 4, generator=gen, dtype=torch.float64), dim=1)
    w.requires_grad_(True)
    y = torch.tensor([2, 0, 4])

    def fn(x_, w_):
        return margin_cross_entropy(cosines(x_, w_), y, 4.0, TARGETS[name])

    assert torch.autograd.gradcheck(fn, (x, w))


def test_gradcheck_softmax_head():
    head = SoftmaxHead(5, 4).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = head.weight.detach().clone().requires_grad_(True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2, 0, 4])

    def fn(x_, w_, b_):
        return torch.func.functional_call(head, {"weight": w_, "bias": b_}, (x_, y))

    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_arcface_target_is_continued_past_pi_and_detached_keeps_the_clamp():
    s, m = 30.0, 0.5
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    cos_y = torch.cos(theta).requires_grad_(True)
    full = arcface_target(cos_y, s, m, "full")
    assert torch.all(full[1:] < full[:-1])  # strictly decreasing in theta
    beyond = theta >= math.pi - m + 1e-3
    expected = s * (cos_y.detach()[beyond] + math.cos(m) - 1.0)
    torch.testing.assert_close(full[beyond], expected, rtol=1e-12, atol=1e-12)
    inside = (theta > 1e-2) & (theta < math.pi - m - 1e-3)
    torch.testing.assert_close(full[inside], s * torch.cos(theta[inside] + m))
    full.sum().backward()
    torch.testing.assert_close(cos_y.grad[beyond], torch.full_like(full[beyond], s))
    assert torch.all(cos_y.grad[inside] > 0)
    detached_cos = torch.cos(theta).requires_grad_(True)
    detached = arcface_target(detached_cos, s, m, "detached")
    # OpenSphere's value: s * cos(min(theta + m, pi)), flat at -s past pi - m.
    torch.testing.assert_close(detached[inside], full.detach()[inside])
    torch.testing.assert_close(detached[beyond], torch.full_like(full[beyond], -s))
    detached.sum().backward()
    torch.testing.assert_close(detached_cos.grad, torch.full_like(detached_cos, s))


@pytest.mark.parametrize("m", [1.5, 2.0, 4.0])
def test_sphereface_psi_is_continuous_and_strictly_decreasing(m):
    theta = torch.linspace(0.0, math.pi, 4001, dtype=torch.float64)
    psi = sphereface_psi(theta, m)
    assert psi[0].item() == pytest.approx(1.0)
    steps = psi[1:] - psi[:-1]
    assert torch.all(steps < 0)
    assert steps.abs().max() < 0.01  # no jumps at the k * pi / m seams
    for k in range(1, int(m) + 1):
        seam = torch.tensor([k * math.pi / m - 1e-9, k * math.pi / m + 1e-9], dtype=torch.float64)
        left, right = sphereface_psi(seam, m).tolist()
        assert left == pytest.approx(right, abs=1e-7)
        assert left == pytest.approx(1.0 - 2.0 * k, abs=1e-7)


def test_sphereface_default_is_gradient_detached():
    head = SphereFaceHead(K, D)
    assert (head.s, head.m, head.gradient) == (30.0, 1.5, "detached")
    cos_y = torch.tensor([0.2, -0.6], requires_grad=True)
    out = head.target_logit(cos_y)
    out.sum().backward()
    torch.testing.assert_close(cos_y.grad, torch.full_like(cos_y, 30.0))
    expected = [30.0 * ref.sphereface_psi(math.acos(c), 1.5) for c in (0.2, -0.6)]
    torch.testing.assert_close(out.detach(), torch.tensor(expected), rtol=1e-6, atol=1e-5)


def test_paper_defaults():
    assert NormFaceHead(K, D).s == 30.0
    assert (CosFaceHead(K, D).s, CosFaceHead(K, D).m) == (30.0, 0.35)
    arc = ArcFaceHead(K, D)
    assert (arc.s, arc.m, arc.gradient) == (30.0, 0.5, "full")
    assert "s=30, m=0.5, gradient='full'" in repr(arc)
    assert "m=0.35" in repr(CosFaceHead(K, D))


@pytest.mark.parametrize("cls", [NormFaceHead, CosFaceHead, ArcFaceHead, SphereFaceHead])
def test_normalised_heads_are_scale_invariant_and_reproject_proxies(cls):
    head = prepare(cls(K, D))
    with torch.no_grad():
        head.weight.mul_(2.0)
    x = batch()
    base = head(x, LABELS)
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(K, dtype=torch.float64))
    for factor in (1e-3, 9.0):
        torch.testing.assert_close(head(factor * x, LABELS), base, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "cls", [SoftmaxHead, NormFaceHead, CosFaceHead, ArcFaceHead, SphereFaceHead]
)
def test_stats(cls):
    head = prepare(cls(K, D)) if cls is not SoftmaxHead else cls(K, D).double()
    x = batch()
    plain = head(x, LABELS)
    assert isinstance(plain, torch.Tensor) and plain.dim() == 0
    loss, stats = head(x, LABELS, return_stats=True)
    torch.testing.assert_close(loss, plain)
    assert set(stats) == {"pos_cos", "neg_cos", "accuracy"}
    W = head.weight.tolist()
    cos = [[ref.cosine(xn, w) / ref.norm(w) for w in W] for xn in x.tolist()]
    labels = LABELS.tolist()
    pos = [cos[n][y] for n, y in enumerate(labels)]
    neg = [cos[n][i] for n, y in enumerate(labels) for i in range(K) if i != y]
    assert stats["pos_cos"].item() == pytest.approx(sum(pos) / B, rel=1e-12)
    assert stats["neg_cos"].item() == pytest.approx(sum(neg) / len(neg), rel=1e-12)
    linear = (x @ head.weight.T + head.bias).detach() if cls is SoftmaxHead else None
    scores = torch.tensor(cos) if linear is None else linear
    expected_accuracy = (scores.argmax(dim=1) == LABELS).double().mean().item()
    assert stats["accuracy"].item() == pytest.approx(expected_accuracy)
    for value in stats.values():
        assert value.dim() == 0 and not value.requires_grad


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (NormFaceHead, {"s": 0.0}, "normface: s must be > 0"),
        (CosFaceHead, {"m": -0.1}, "cosface: m must be >= 0"),
        (ArcFaceHead, {"m": 3.5}, "arcface: m must be < 3.14159"),
        (ArcFaceHead, {"gradient": "half"}, "arcface: gradient must be one of"),
        (SphereFaceHead, {"m": 0.0}, "sphereface: m must be > 0"),
        (SphereFaceHead, {"s": float("inf")}, "s must be finite"),
        (SoftmaxHead, {"num_classes": 1}, "softmax: num_classes must be >= 2"),
    ],
)
def test_bad_hyper_parameters(cls, kwargs, message):
    args = {"num_classes": K, "embedding_dim": D} | kwargs
    with pytest.raises(ValueError, match=message):
        cls(**args)
