"""Angular margins past pi: the continuation is continuous, strictly decreasing, equal to the
published function where that does not saturate, and pulls features back from any start."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sphereface2.heads import build_head, sphereface2_loss
from sphereface2.heads import sphereface2_math as sf2_math
from sphereface2.heads.angular import angle
from sphereface2.heads.base import cosines
from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
from sphereface2.heads.margin_softmax import (
    ArcFaceHead,
    arcface_target,
    arcface_value,
    margin_cross_entropy,
)
from sphereface2.heads.sharded import build_sharded_head
from sphereface2.heads.sphereface2_math import positive_logit, similarity_adjust

# (kind, m): "arcface" is the margin-softmax head's target, "A"/"M" SphereFace2's positive.
MARGINS = [("arcface", 0.5), ("arcface", 1.2), ("A", 0.5), ("A", 2.0), ("M", 1.7), ("M", 3.5)]
R = 7.0


def joint(kind: str, m: float) -> float:
    """theta0, where the shifted angle reaches pi."""
    return math.pi / m if kind == "M" else math.pi - m


def margin_logit(kind: str, m: float, cos: torch.Tensor, gradient: str, t: float = 3.0):
    """r * (margin value) for a cosine tensor, through the library (no bias)."""
    if kind == "arcface":
        return arcface_target(cos, R, m, gradient)
    return positive_logit(cos, 0.0, margin_type=kind, r=R, m=m, t=t, gradient=gradient)


def published_logit(kind: str, m: float, cos: torch.Tensor, t: float = 3.0) -> torch.Tensor:
    """The clamped function as it was before the continuation, written out here."""
    theta = angle(cos)
    shifted = theta * m if kind == "M" else theta + m
    u = torch.cos(shifted.clamp(max=math.pi))
    return R * (u if kind == "arcface" else similarity_adjust(u, t))


@pytest.mark.parametrize("t", [1.0, 3.0])
@pytest.mark.parametrize(("kind", "m"), MARGINS)
def test_continuation_is_continuous_and_strictly_decreasing(kind, m, t):
    theta0 = joint(kind, m)
    theta = torch.linspace(0.01, math.pi, 20001, dtype=torch.float64)
    value = margin_logit(kind, m, torch.cos(theta), "full", t)
    steps = value[1:] - value[:-1]
    assert torch.all(steps <= 0)
    # Strict everywhere, except where g's zero slope at -1 (t > 1) makes the published
    # function round to a constant within 1e-12 of -r in float64 just inside the joint.
    flat = (steps == 0) & ((value[:-1] + R).abs() < 1e-12)
    assert torch.all((steps < 0) | flat)
    if flat.any():
        assert kind != "arcface" and t > 1
        assert theta[:-1][flat].min() > theta0 - 0.05 and theta[1:][flat].max() <= theta0 + 1e-12
    # Continuous at the joint: -r on both sides, no jump (arcface_torch's cos - m sin m
    # would drop by r * (1 - cos m - m sin m) here).
    sides = torch.tensor([theta0 - 1e-9, theta0 + 1e-9], dtype=torch.float64)
    left, right = margin_logit(kind, m, torch.cos(sides), "full", t).tolist()
    assert left == pytest.approx(-R, abs=1e-6) and right == pytest.approx(-R, abs=1e-6)
    # Past the joint: r (cos - cos theta0 - 1), below -r, with slope r per unit cosine.
    past = theta > theta0 + 1e-6
    cos = torch.cos(theta[past]).requires_grad_(True)
    out = margin_logit(kind, m, cos, "full", t)
    expected = R * (cos.detach() - math.cos(theta0) - 1.0)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), cos)
    assert torch.all(grad == R)


@pytest.mark.parametrize(("kind", "m"), MARGINS)
def test_same_bits_where_the_published_function_does_not_saturate(kind, m):
    """Values and gradients are the published ones below the joint (full) and everywhere
    (detached: the clamped value, the gradient r)."""
    theta = torch.linspace(0.0, math.pi, 4001, dtype=torch.float64)
    below = theta < joint(kind, m)
    for gradient in ("full", "detached"):
        new_cos = torch.cos(theta).requires_grad_(True)
        new = margin_logit(kind, m, new_cos, gradient)
        (new_grad,) = torch.autograd.grad(new.sum(), new_cos)
        old_cos = torch.cos(theta).requires_grad_(True)
        old = published_logit(kind, m, old_cos)
        (old_grad,) = torch.autograd.grad(old.sum(), old_cos)
        if gradient == "full":
            assert torch.equal(new.detach()[below], old.detach()[below])
            assert torch.equal(new_grad[below], old_grad[below])
        else:
            torch.testing.assert_close(new.detach(), old.detach(), rtol=1e-14, atol=1e-13)
            assert torch.all(new_grad == R)


def features_around_the_joint(weight: torch.Tensor, labels: torch.Tensor, angles: list[float]):
    """Embeddings (norm 1.7) at the given angles to their own proxy, in random directions."""
    gen = torch.Generator().manual_seed(11)
    own = weight[labels]
    side = torch.randn(own.shape, generator=gen, dtype=own.dtype)
    side = F.normalize(side - (side * own).sum(1, keepdim=True) * own, dim=1)
    theta = torch.tensor(angles, dtype=own.dtype).unsqueeze(1)
    return 1.7 * (torch.cos(theta) * own + torch.sin(theta) * side)


def angles_around(theta0: float) -> list[float]:
    """Both sides of the joint, never within gradcheck's step of it, and near pi."""
    return [
        a
        for a in (theta0 - 0.4, theta0 - 0.02, theta0 + 0.02, theta0 + 0.3, math.pi - 0.01)
        if 0.05 < a < math.pi
    ]


@pytest.mark.parametrize(("kind", "m"), [("A", 0.5), ("M", 1.7), ("A", 2.0)])
def test_gradcheck_sphereface2_across_the_joint(kind, m):
    gen = torch.Generator().manual_seed(3)
    w = F.normalize(torch.randn(6, 7, generator=gen, dtype=torch.float64), dim=1)
    angles = angles_around(joint(kind, m))
    y = torch.arange(len(angles)) % 6
    x = features_around_the_joint(w, y, angles).requires_grad_(True)
    w.requires_grad_(True)
    b = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)

    def fn(x_, w_, b_):
        return sphereface2_loss(x_, w_, b_, y, margin_type=kind, r=5.0, m=m, t=3.0, lw=2.0)

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("m", [0.5, 1.2])
def test_gradcheck_arcface_across_the_joint(m):
    gen = torch.Generator().manual_seed(5)
    w = F.normalize(torch.randn(6, 7, generator=gen, dtype=torch.float64), dim=1)
    angles = angles_around(joint("arcface", m))
    y = torch.arange(len(angles)) % 6
    x = features_around_the_joint(w, y, angles).requires_grad_(True)
    w.requires_grad_(True)

    def fn(x_, w_):
        return margin_cross_entropy(
            cosines(x_, w_), y, 4.0, lambda c: arcface_target(c, 4.0, m, "full")
        )

    assert torch.autograd.gradcheck(fn, (x, w))


@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize(("kind", "m"), [("A", 0.5), ("M", 1.7)])
def test_fused_and_sharded_heads_equal_the_plain_head_across_the_joint(kind, m, gradient):
    params = {"margin_type": kind, "m": m, "gradient": gradient, "r": 8.0}
    plain = build_head("sphereface2", 6, 7, implementation="plain", **params).double()
    fused = FusedSphereFace2Head(6, 7, chunk_size=4, **params).double()
    sharded = build_sharded_head("sphereface2", 6, 7, implementation="plain", **params).double()
    fused.load_state_dict(plain.state_dict())
    sharded.load_state_dict(plain.state_dict())
    angles = angles_around(joint(kind, m))
    y = torch.arange(len(angles)) % 6
    x = features_around_the_joint(plain.weight.detach(), y, angles)
    results = []
    for head in (plain, fused, sharded):
        xi = x.clone().requires_grad_(True)
        loss = head(xi, y)
        loss.backward()
        results.append([loss.detach(), xi.grad, head.weight.grad, head.bias.grad])
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- training from opposite


def mean_positive_cosine_after(head: torch.nn.Module, steps: int) -> tuple[float, float]:
    """SGD on free embeddings and the head's parameters from features opposite their proxies.

    K = 8 proxies share a common direction (pairwise cosine about 0.4, as in the collapsed
    run on real faces), so pushing a feature away from the other proxies keeps it near its
    own antipode: only the own class's pull can bring it back. Returns the mean cosine to
    the own proxy before and after.
    """
    num_classes, dim, batch = 8, 16, 32
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(batch) % num_classes
    centre = F.normalize(torch.randn(dim, generator=gen), dim=0)
    proxies = F.normalize(centre + 0.3 * torch.randn(num_classes, dim, generator=gen), dim=1)
    with torch.no_grad():
        head.weight.copy_(proxies)
    x = torch.nn.Parameter(-proxies[labels] + 0.02 * torch.randn(batch, dim, generator=gen))
    optimiser = torch.optim.SGD([x, *head.parameters()], lr=0.1)

    def positive() -> float:
        with torch.no_grad():
            own = F.normalize(head.weight, dim=1)[labels]
            return (F.normalize(x, dim=1) * own).sum(1).mean().item()

    before = positive()
    for _ in range(steps):
        optimiser.zero_grad()
        head(x, labels).backward()
        optimiser.step()
    return before, positive()


HEADS_FROM_OPPOSITE = [
    ("arcface", {"m": 0.5}),
    ("sphereface", {"m": 1.5}),
    ("sphereface2", {"margin_type": "A", "m": 0.5, "implementation": "plain"}),
    ("sphereface2", {"margin_type": "M", "m": 1.7, "implementation": "plain"}),
]


@pytest.mark.parametrize("gradient", ["full", "detached"])
@pytest.mark.parametrize(("name", "params"), HEADS_FROM_OPPOSITE, ids=lambda v: str(v))
def test_every_margin_head_recovers_from_features_opposite_their_proxies(name, params, gradient):
    head = build_head(name, 8, 16, gradient=gradient, **params)
    before, after = mean_positive_cosine_after(head, steps=200)
    assert before < -0.99
    # A and M with the full gradient stop near their joint, where the published function
    # itself is flat for t = 3 (cos theta0 = -0.88 for A, -0.27 for M); the rest go further.
    assert after > before + 0.1, (before, after)


class ClampedArcFace(ArcFaceHead):
    """ArcFace as before the continuation: the published clamp, differentiated."""

    def target_logit(self, cos_y: torch.Tensor) -> torch.Tensor:
        return self.s * arcface_value(cos_y, self.m, continued=False)


def test_the_published_clamp_with_the_full_gradient_stays_trapped(monkeypatch):
    """The same start defeats the clamped functions: the recovery test can fail."""
    _, after = mean_positive_cosine_after(ClampedArcFace(8, 16, m=0.5), steps=200)
    assert after < -0.95
    clamped = sf2_math._positive_value

    def published(*args, **kwargs):
        return clamped(*args, **(kwargs | {"continued": False}))

    monkeypatch.setattr(sf2_math, "_positive_value", published)
    for margin_type, m in (("A", 0.5), ("M", 1.7)):
        head = build_head(
            "sphereface2", 8, 16, margin_type=margin_type, m=m, implementation="plain"
        )
        before, after = mean_positive_cosine_after(head, steps=200)
        assert after < before + 0.05, (margin_type, before, after)
