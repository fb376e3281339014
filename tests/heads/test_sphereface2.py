"""SphereFace2 head against loop references, gradcheck, the bias closed form and its checks."""

from __future__ import annotations

import math

import heads_loop_reference as ref
import pytest
import torch
import torch.nn.functional as F

from sphereface2.heads import SphereFace2Head, sphereface2_loss
from sphereface2.heads.angular import ANGLE_EPS
from sphereface2.heads.sphereface2_math import (
    bias_init,
    chunk_loss,
    negative_logit,
    positive_logit,
    similarity_adjust,
)

PAPER_M = {"C": 0.4, "A": 0.5, "M": 1.7}
B, K, D = 4, 6, 5


def make_head(margin_type: str, gradient: str = "full", **hp) -> SphereFace2Head:
    params = {"lam": 0.7, "r": 6.0, "m": PAPER_M[margin_type], "t": 3.0, "lw": 10.0}
    params.update(hp)
    head = SphereFace2Head(K, D, margin_type=margin_type, gradient=gradient, **params).double()
    with torch.no_grad():
        head.weight.copy_(F.normalize(torch.randn(K, D, dtype=torch.float64), dim=1))
        head.bias.fill_(-1.3)
    return head


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = 2.5 * torch.randn(B, D, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 3])
    return x, y


def hyper(head: SphereFace2Head) -> dict:
    return {
        "margin_type": head.margin_type,
        "lam": head.lam,
        "r": head.r,
        "m": head.m,
        "t": head.t,
        "lw": head.lw,
        "gradient": head.gradient,
    }


def autograd_result(head: SphereFace2Head, x: torch.Tensor, y: torch.Tensor):
    x = x.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, y)
    loss.backward()
    return loss.item(), x.grad, head.weight.grad, head.bias.grad


CASES = [
    ("C", {}),
    ("A", {}),
    ("M", {}),
    ("C", {"t": 1.0, "lam": 0.4, "r": 3.0}),
    ("A", {"t": 2.0, "m": 0.9}),
    ("M", {"m": 1.2, "r": 40.0}),
]


@pytest.mark.parametrize(("margin_type", "hp"), CASES)
def test_full_gradient_loss_and_gradients_match_loops(margin_type, hp):
    head = make_head(margin_type, "full", **hp)
    x, y = batch()
    loss, gx, gw, gb = autograd_result(head, x, y)
    X, W, b, labels = x.tolist(), head.weight.tolist(), head.bias.item(), y.tolist()

    def loop(X_, W_, b_):
        return ref.sf2_loss(X_, W_, b_, labels, **hyper(head))

    assert loss == pytest.approx(loop(X, W, b), rel=1e-12)
    fx, fw, fb = ref.finite_difference(loop, X, W, b)
    torch.testing.assert_close(gx, torch.tensor(fx, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw, torch.tensor(fw, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    assert gb.item() == pytest.approx(fb, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(("margin_type", "hp"), CASES)
def test_detached_gradient_same_value_and_analytic_gradient(margin_type, hp):
    head = make_head(margin_type, "detached", **hp)
    x, y = batch()
    loss, gx, gw, gb = autograd_result(head, x, y)
    X, W, b, labels = x.tolist(), head.weight.tolist(), head.bias.item(), y.tolist()
    assert loss == pytest.approx(ref.sf2_loss(X, W, b, labels, **hyper(head)), rel=1e-12)
    ex, ew, eb = ref.sf2_detached_grads(X, W, b, labels, **hyper(head))
    torch.testing.assert_close(gx, torch.tensor(ex, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, torch.tensor(ew, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert gb.item() == pytest.approx(eb, rel=1e-10)
    # The detached gradient differs from the full one unless g and the margin are linear.
    full = make_head(margin_type, "full", **hp)
    full.load_state_dict(head.state_dict())
    _, gx_full, _, _ = autograd_result(full, x, y)
    linear = margin_type == "C" and head.t == 1.0
    assert torch.allclose(gx, gx_full, rtol=1e-10) == linear


@pytest.mark.parametrize(("margin_type", "m"), [("C", 0.4), ("A", 0.5), ("M", 1.7), ("M", 0.6)])
def test_logits_over_the_whole_cosine_range(margin_type, m):
    """Including the angles where A and M's shifted angle passes pi (the continuation)."""
    grid = [-0.999 + 1.998 * k / 200 for k in range(201)]
    cos = torch.tensor(grid, dtype=torch.float64, requires_grad=True)
    hp = {"margin_type": margin_type, "r": 7.0, "m": m, "t": 3.0}
    pos = positive_logit(cos, 0.25, **hp)
    neg = negative_logit(cos, 0.25, **hp)
    expected_pos = [ref.sf2_positive(c, margin_type, 7.0, m, 3.0, 0.25) for c in grid]
    expected_neg = [ref.sf2_negative(c, margin_type, 7.0, m, 3.0, 0.25) for c in grid]
    torch.testing.assert_close(pos, torch.tensor(expected_pos, dtype=torch.float64))
    torch.testing.assert_close(neg, torch.tensor(expected_neg, dtype=torch.float64))
    (pos_grad,) = torch.autograd.grad(pos.sum(), cos)
    h = 1e-7
    fd = [
        (
            ref.sf2_positive(c + h, margin_type, 7.0, m, 3.0, 0.25)
            - ref.sf2_positive(c - h, margin_type, 7.0, m, 3.0, 0.25)
        )
        / (2 * h)
        for c in grid
    ]
    torch.testing.assert_close(
        pos_grad, torch.tensor(fd, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )
    # Past the joint theta0 the positive logit is r * (c - cos theta0 - 1) + b, slope r.
    theta0 = {"C": math.inf, "A": math.pi - m, "M": math.pi / m}[margin_type]
    past = torch.acos(cos.detach()) > theta0 + 1e-9
    assert bool(past.any()) == (margin_type == "A" or (margin_type == "M" and m > 1))
    if past.any():
        expected = 7.0 * (cos.detach()[past] - math.cos(theta0) - 1.0) + 0.25
        torch.testing.assert_close(pos.detach()[past], expected, rtol=1e-12, atol=1e-12)
        assert torch.all(pos_grad[past] == 7.0)
        assert torch.all(pos.detach()[past] < -7.0 + 0.25)  # below the joint value -r + b


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_gradcheck_full_gradient(margin_type):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = F.normalize(torch.randn(5, 4, generator=gen, dtype=torch.float64), dim=1)
    w.requires_grad_(True)
    b = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([4, 0, 2])

    def fn(x_, w_, b_):
        return sphereface2_loss(
            x_, w_, b_, y, margin_type=margin_type, r=5.0, m=PAPER_M[margin_type], lw=2.0
        )

    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_head_default_hyper_parameters_match_the_paper():
    head = SphereFace2Head(10, 4)
    assert (head.margin_type, head.lam, head.r, head.m, head.t, head.lw, head.gradient) == (
        "C",
        0.7,
        40.0,
        0.4,
        3.0,
        10.0,
        "full",
    )
    assert head.bias.dim() == 0 and head.weight.shape == (10, 4)
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(10))
    text = repr(head)
    for part in ("margin_type='C'", "lam=0.7", "r=40", "m=0.4", "t=3", "lw=10", "'full'"):
        assert part in text


# ---------------------------------------------------------------- bias initialisation


def direct_closed_form(K, margin_type, lam, r, m, t):
    """The paper's formula, written out as given."""

    def g(z):
        return 2 * ((z + 1) / 2) ** t - 1

    theta_y0 = {
        "C": math.pi / 2,
        "A": min(math.pi, math.pi / 2 + m),
        "M": min(math.pi, m * math.pi / 2),
    }
    m_pos, m_neg = (m, m) if margin_type == "C" else (0.0, 0.0)
    z = lam / ((1 - lam) * (K - 1))
    a_y = r * (g(math.cos(theta_y0[margin_type])) - m_pos)
    a_i = r * (g(0.0) + m_neg)
    return (
        math.log(2 * z)
        - a_i
        - math.log(1 - z + math.sqrt((1 - z) ** 2 + 4 * z * math.exp(a_y - a_i)))
    )


def initial_loss_at_zero_cosines(K, margin_type, lam, r, m, t, b):
    """Per-sample loss (no lw) when every cosine is 0, by the loop reference."""
    return ref.sf2_loss(
        [[1.0, 0.0]],
        [[0.0, 1.0]] * K,
        b,
        [0],
        margin_type=margin_type,
        lam=lam,
        r=r,
        m=m,
        t=t,
        lw=1.0,
    )


def dloss_db_at_zero_cosines(K, margin_type, lam, r, m, t, b, gradient="full"):
    """Analytic d/db of the zero-cosine per-sample loss, times r (summed in closed form)."""
    a_y = ref.sf2_positive(0.0, margin_type, r, m, t, 0.0, gradient)
    a_i = ref.sf2_negative(0.0, margin_type, r, m, t, 0.0)
    return -lam * ref.sigmoid(-(a_y + b)) + (1 - lam) * (K - 1) * ref.sigmoid(a_i + b)


def test_bias_check_value():
    assert round(bias_init(8631, "C", 0.7, 40.0, 0.4, 3.0), 4) == 5.7846


@pytest.mark.parametrize(
    ("K", "margin_type", "lam", "r", "m", "t"),
    [
        (8631, "C", 0.7, 40.0, 0.4, 3.0),
        (8631, "A", 0.7, 40.0, 0.5, 3.0),
        (8631, "M", 0.7, 40.0, 1.7, 3.0),
        (85742, "C", 0.8, 64.0, 0.5, 3.0),
        (10, "M", 0.6, 10.0, 0.5, 1.0),
        (3, "A", 0.9, 5.0, 0.2, 2.0),  # z > 1: the other root formula
    ],
)
def test_bias_init_matches_formula_and_minimises_initial_loss(K, margin_type, lam, r, m, t):
    b0 = bias_init(K, margin_type, lam, r, m, t)
    assert b0 == pytest.approx(direct_closed_form(K, margin_type, lam, r, m, t), rel=1e-12)
    assert dloss_db_at_zero_cosines(K, margin_type, lam, r, m, t, b0) == pytest.approx(0, abs=1e-12)
    at = initial_loss_at_zero_cosines(K, margin_type, lam, r, m, t, b0)
    for step in (-0.01, 0.01):
        assert at < initial_loss_at_zero_cosines(K, margin_type, lam, r, m, t, b0 + step)


@pytest.mark.parametrize(
    ("K", "margin_type", "lam", "r", "m", "t"),
    [
        (2, "C", 0.9, 64.0, 0.5, 3.0),
        (5, "M", 0.7, 500.0, 0.2, 3.0),
        (3, "M", 0.95, 600.0, 0.1, 3.0),
    ],
)
def test_bias_init_is_stable_where_the_direct_formula_is_not(K, margin_type, lam, r, m, t):
    with pytest.raises((ValueError, OverflowError)):  # log(0) or exp overflow
        direct_closed_form(K, margin_type, lam, r, m, t)
    b0 = bias_init(K, margin_type, lam, r, m, t)
    assert math.isfinite(b0)

    def dloss_db(b):
        return dloss_db_at_zero_cosines(K, margin_type, lam, r, m, t, b)

    scale = lam + (1 - lam) * (K - 1)
    assert abs(dloss_db(b0)) < 1e-9 * scale
    assert dloss_db(b0 - 0.1) < 0 < dloss_db(b0 + 0.1)


@pytest.mark.parametrize(("margin_type", "m"), [("A", 2.0), ("M", 3.5)])
def test_bias_init_past_pi_follows_the_gradient_mode(margin_type, m):
    """A right angle shifted past pi: "full" scores it with the continuation, "detached"
    with the published clamp, and each b0 is the stationary point of its own loss."""
    K, lam, r, t = 50, 0.7, 10.0, 3.0
    b0 = {g: bias_init(K, margin_type, lam, r, m, t, g) for g in ("full", "detached")}
    assert b0["detached"] == pytest.approx(direct_closed_form(K, margin_type, lam, r, m, t))
    assert b0["full"] != pytest.approx(b0["detached"], abs=1e-3)
    for gradient, b in b0.items():
        slope = dloss_db_at_zero_cosines(K, margin_type, lam, r, m, t, b, gradient)
        assert slope == pytest.approx(0, abs=1e-12)
        head = SphereFace2Head(K, 4, margin_type=margin_type, m=m, r=r, gradient=gradient)
        assert head.bias.item() == pytest.approx(b, rel=1e-6)
    with pytest.raises(ValueError, match="gradient must be 'full' or 'detached'"):
        bias_init(K, margin_type, lam, r, m, t, "none")


def orthogonal_setup(K: int, margin_type: str, m: float):
    """A float64 head whose K proxies lie in span(e0, e1, e2) and embeddings along e3."""
    head = SphereFace2Head(K, 4, margin_type=margin_type, m=m).double()
    with torch.no_grad():
        head.weight[:, 3] = 0.0
        head.bias.fill_(bias_init(K, margin_type, 0.7, 40.0, m, 3.0))
    x = torch.zeros(3, 4, dtype=torch.float64)
    x[:, 3] = torch.tensor([1.0, 2.0, 0.5])
    y = torch.tensor([0, 17, K - 1])
    return head, x, y


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_initial_loss_is_stationary_in_the_bias(margin_type):
    head, x, y = orthogonal_setup(8631, margin_type, PAPER_M[margin_type])
    loss, stats = head(x, y, return_stats=True)
    assert stats["pos_cos"].item() == 0.0 and stats["neg_cos"].item() == 0.0
    loss.backward()
    assert abs(head.bias.grad.item()) < 1e-9
    expected = initial_loss_at_zero_cosines(
        8631, margin_type, 0.7, 40.0, PAPER_M[margin_type], 3.0, head.bias.item()
    )
    assert loss.item() / head.lw == pytest.approx(expected, rel=1e-10)


def test_initial_loss_check_value_in_float32():
    head, x, y = orthogonal_setup(8631, "C", 0.4)
    head = head.float()
    assert head.bias.item() == pytest.approx(5.7846, abs=5e-5)
    loss = head(x.float(), y)
    assert loss.item() / head.lw == pytest.approx(0.721, abs=5e-4)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_loss_is_invariant_to_embedding_scale(margin_type):
    head = make_head(margin_type)
    x, y = batch()
    base = head(x, y)
    for factor in (1e-3, 0.5, 7.0, 1e4):
        torch.testing.assert_close(head(factor * x, y), base, rtol=1e-12, atol=0)


def test_lw_scales_the_loss_linearly():
    one = make_head("C", lw=1.0)
    fifty = make_head("C", lw=50.0)
    fifty.load_state_dict(one.state_dict())
    x, y = batch()
    torch.testing.assert_close(fifty(x, y), 50.0 * one(x, y), rtol=1e-12, atol=0)


def test_stats_are_correct_detached_and_only_on_request():
    head = make_head("A")
    x, y = batch()
    plain = head(x, y)
    assert isinstance(plain, torch.Tensor) and plain.dim() == 0
    loss, stats = head(x.requires_grad_(True), y, return_stats=True)
    assert set(stats) == {"pos_cos", "neg_cos", "bias"}
    torch.testing.assert_close(loss, plain)
    W = head.weight.tolist()
    cos = [[ref.cosine(xn, w) for w in W] for xn in x.tolist()]
    pos = [cos[n][yn] for n, yn in enumerate(y.tolist())]
    neg = [cos[n][i] for n, yn in enumerate(y.tolist()) for i in range(K) if i != yn]
    assert stats["pos_cos"].item() == pytest.approx(sum(pos) / len(pos), rel=1e-12)
    assert stats["neg_cos"].item() == pytest.approx(sum(neg) / len(neg), rel=1e-12)
    assert stats["bias"].item() == -1.3
    for value in stats.values():
        assert value.dim() == 0 and not value.requires_grad
    with torch.no_grad():
        head.bias.add_(1.0)  # an optimiser step must not change a recorded stat
    assert stats["bias"].item() == -1.3


def test_proxies_are_reprojected_in_place_and_still_get_gradients():
    head = make_head("C")
    with torch.no_grad():
        head.weight.mul_(3.0)
    x, y = batch()
    head(x, y).backward()
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(K, dtype=torch.float64))
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_two_forwards_then_one_backward():
    head = make_head("M")
    x, y = batch()
    (head(x, y) + head(x.flip(1), y)).backward()
    assert torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("margin_type", ["A", "M"])
def test_cosines_of_exactly_one_keep_finite_gradients_in_float32(margin_type):
    head = SphereFace2Head(K, D, margin_type=margin_type, m=PAPER_M[margin_type])
    x = head.weight.detach()[[0, 1, 2]].clone().requires_grad_(True)  # cos_y == 1
    y = torch.tensor([0, 1, 2])
    head(x, y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    ends = torch.tensor([-1.0, 1.0], requires_grad=True)
    positive_logit(
        ends, 0.0, margin_type=margin_type, r=40, m=PAPER_M[margin_type], t=3
    ).sum().backward()
    assert torch.isfinite(ends.grad).all()
    # The clamp is a real one in float32: 1 - ANGLE_EPS does not round to 1.
    assert torch.tensor(1.0 - ANGLE_EPS, dtype=torch.float32).item() < 1.0


def test_similarity_adjust_is_safe_just_outside_the_unit_interval():
    out = similarity_adjust(torch.tensor([-1.0 - 1e-7, 0.0, 1.0 + 1e-7]), 2.5)
    torch.testing.assert_close(out, torch.tensor([-1.0, 2 * 0.5**2.5 - 1, 1.0]))
    torch.testing.assert_close(similarity_adjust(torch.tensor([0.3]), 1.0), torch.tensor([0.3]))


@pytest.mark.parametrize("gradient", ["full", "detached"])
def test_chunks_of_classes_add_up_to_the_whole(gradient):
    gen = torch.Generator().manual_seed(5)
    cos = torch.empty(6, 11, dtype=torch.float64).uniform_(-0.9, 0.9, generator=gen)
    labels = torch.tensor([0, 10, 4, 5, 7, 4])
    hp = {"margin_type": "C", "lam": 0.7, "r": 8.0, "m": 0.4, "t": 3.0, "gradient": gradient}
    whole_cos = cos.clone().requires_grad_(True)
    whole = chunk_loss(whole_cos, labels, -0.5, **hp)
    whole.sum().backward()
    parts_cos = cos.clone().requires_grad_(True)
    total = torch.zeros(6, dtype=torch.float64)
    for start, stop in ((0, 4), (4, 5), (5, 11)):
        total = total + chunk_loss(parts_cos[:, start:stop], labels - start, -0.5, **hp)
    total.sum().backward()
    torch.testing.assert_close(total, whole, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(parts_cos.grad, whole_cos.grad, rtol=1e-12, atol=1e-14)


def test_negative_logit_detached_value_matches_full():
    cos = torch.linspace(-0.99, 0.99, 9, dtype=torch.float64)
    for mt in ("C", "A", "M"):
        full = negative_logit(cos, 0.3, margin_type=mt, r=40, m=0.5, t=3)
        det = negative_logit(cos, 0.3, margin_type=mt, r=40, m=0.5, t=3, gradient="detached")
        torch.testing.assert_close(det, full, rtol=1e-12, atol=1e-12)


def test_autocast_bfloat16_computes_the_margins_in_float32():
    head = SphereFace2Head(K, D, margin_type="A", m=0.5)
    x, y = batch()
    x = x.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(head(x, y).item(), rel=0.05)


# ---------------------------------------------------------------- errors


def test_validation_errors_name_the_problem():
    head = SphereFace2Head(K, D)
    x = torch.randn(B, D)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"label 6 at batch index 2 is outside \[0, 6\)"):
        head(x, torch.tensor([0, 1, 6, 3]))
    with pytest.raises(ValueError, match="label -1 at batch index 0"):
        head(x, torch.tensor([-1, 1, 2, 3]))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="batch index 3 has a non-finite"):
        head(bad, y)
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        head(bad, y)
    with pytest.raises(ValueError, match="2-D floating-point"):
        head(x[0], y)
    with pytest.raises(ValueError, match="2-D floating-point"):
        head(x.long(), y)
    with pytest.raises(ValueError, match="dimension 4, the head was built for 5"):
        head(x[:, :4], y)
    with pytest.raises(ValueError, match="1-D integer"):
        head(x, y.float())
    with pytest.raises(ValueError, match="1-D integer"):
        head(x, y[:, None])
    with pytest.raises(ValueError, match="3 labels for a batch of 4"):
        head(x, y[:3])
    with pytest.raises(ValueError, match="empty batch"):
        head(x[:0], y[:0])
    assert torch.isfinite(head(x, y.int()))  # any integer dtype is fine


def test_validate_false_skips_only_the_value_checks():
    head = SphereFace2Head(K, D, validate=False)
    x = torch.randn(B, D)
    x[0, 0] = float("nan")
    assert torch.isnan(head(x, torch.tensor([0, 1, 2, 3])))
    with pytest.raises(ValueError, match="dimension"):
        head(x[:, :2], torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin_type": "B"}, "margin_type must be one of 'C', 'A', 'M'"),
        ({"gradient": "none"}, "gradient must be one of 'full', 'detached'"),
        ({"lam": 0.0}, "lam must be > 0"),
        ({"lam": 1.0}, "lam must be < 1"),
        ({"r": 0.0}, "r must be > 0"),
        ({"t": -1.0}, "t must be > 0"),
        ({"lw": 0.0}, "lw must be > 0"),
        ({"m": float("nan")}, "m must be finite"),
        ({"m": -0.1}, "m must be >= 0"),
        ({"margin_type": "M", "m": 0.0}, "m must be > 0"),
        ({"r": "40"}, "r must be a number"),
        ({"num_classes": 1}, "num_classes must be >= 2"),
        ({"embedding_dim": 0}, "embedding_dim must be >= 1"),
        ({"num_classes": 2.5}, "num_classes must be an int"),
    ],
)
def test_bad_hyper_parameters(kwargs, message):
    args = {"num_classes": 10, "embedding_dim": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        SphereFace2Head(**args)
