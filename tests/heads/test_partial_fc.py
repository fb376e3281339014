"""Partial FC (class sampling) of the softmax-family heads against float64 loop references."""

from __future__ import annotations

import math

import heads_loop_reference as ref
import pytest
import torch

from sphereface2.heads import build_head
from sphereface2.heads.class_sampling import sample_size
from sphereface2.heads.sharded import build_sharded_head

K, D = 40, 6
LABELS = torch.tensor([3, 17, 3, 39, 0, 22])
SOFTMAX_FAMILY = ["softmax", "normface", "cosface", "arcface", "sphereface"]
SMALL_S = {"s": 4.0}  # keeps the softmax unsaturated, so every sampled row gets a gradient


def params(name: str) -> dict:
    return {} if name == "softmax" else dict(SMALL_S)


def embeddings(seed: int = 5, batch: int = len(LABELS)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.7 * torch.randn(batch, D, generator=gen, dtype=torch.float64)


def head(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_head(name, K, D, **params(name), **kwargs).double()


def step(h: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor = LABELS):
    """Loss, stats and the gradients of the embeddings and every parameter."""
    x = x.clone().requires_grad_(True)
    loss, stats = h(x, labels, return_stats=True)
    loss.backward()
    grads = {key: p.grad.clone() for key, p in h.named_parameters()}
    h.zero_grad(set_to_none=True)
    return loss.detach(), stats, x.grad, grads


# -- sample_rate = 1 is today's head ----------------------------------------------------


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_rate_one_is_the_exact_head_bit_for_bit(name):
    today, rate_one = head(name), head(name, sample_rate=1.0, sample_seed=9)
    assert rate_one.state_dict().keys() == today.state_dict().keys()  # no draw counter
    for a, b in zip(step(today, embeddings()), step(rate_one, embeddings())):
        if isinstance(a, dict):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        else:
            assert torch.equal(a, b)
    assert rate_one.last_sampled_classes is None
    assert repr(rate_one) == repr(today)


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_eval_mode_is_exact_and_draws_nothing(name):
    exact, sampled = head(name), head(name, sample_rate=0.25)
    sampled.eval()
    assert torch.equal(exact(embeddings(), LABELS), sampled(embeddings(), LABELS))
    assert int(sampled.sample_draws) == 0 and sampled.last_sampled_classes is None


# -- the sample ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "positives", "rate", "expected"),
    [
        (40, 5, 0.25, 10),
        (40, 5, 0.1, 5),  # ceil(4) < 5 positives: positives only
        (40, 3, 0.1, 4),
        (10, 0, 0.7, 7),  # read as written: 0.7 * 10 is 7.000000000000001 in floats
        (10, 0, 0.1, 1),  # Fraction(0.1) * 10 would be just above 1
        (7, 0, 0.5, 4),  # ceil(3.5)
        (1_000_000, 256, 0.1, 100_000),
        (5, 2, 1.0, 5),
        (3, 0, 1e-9, 1),
    ],
)
def test_count_rule(classes, positives, rate, expected):
    assert sample_size(classes, positives, rate) == expected


@pytest.mark.parametrize("rate", [0.05, 0.25, 0.5, 0.99])
def test_every_positive_is_kept_and_the_count_follows_the_rule(rate):
    h = head("cosface", sample_rate=rate)
    for seed in range(5):
        labels = torch.randint(0, K, (7,), generator=torch.Generator().manual_seed(seed))
        h(embeddings(seed, 7), labels)
        classes = h.last_sampled_classes
        positives = set(labels.tolist())
        assert positives <= set(classes.tolist())
        assert len(classes) == max(len(positives), math.ceil(rate * K - 1e-12))
        assert torch.equal(classes, torch.unique(classes))  # sorted, no repeats
        assert int(classes.min()) >= 0 and int(classes.max()) < K


def test_negatives_are_uniform():
    """Each negative class is drawn with probability (S - P) / (K - P): counts over many
    draws stay within 5 binomial standard deviations of that."""
    k, labels, draws = 12, torch.tensor([0, 5]), 3000
    h = build_head("normface", k, D, sample_rate=0.5)
    counts = torch.zeros(k)
    for _ in range(draws):
        h(torch.randn(2, D), labels)
        counts[h.last_sampled_classes] += 1
    assert counts[0] == counts[5] == draws
    p = (6 - 2) / (k - 2)
    negatives = counts[[i for i in range(k) if i not in (0, 5)]]
    assert (negatives - draws * p).abs().max() < 5 * math.sqrt(draws * p * (1 - p))


def test_draws_are_reproducible_and_seeded():
    def sequence(**kwargs) -> list[list[int]]:
        h = head("arcface", sample_rate=0.2, **kwargs)
        out = []
        for _ in range(4):
            h(embeddings(), LABELS)
            out.append(h.last_sampled_classes.tolist())
        assert int(h.sample_draws) == 4
        return out

    first = sequence(sample_seed=1)
    assert first == sequence(sample_seed=1)
    assert first != sequence(sample_seed=2)
    assert len({tuple(s) for s in first}) == 4  # a new sample every forward
    # the weights' init (global RNG) does not change the sample, and drawing leaves the
    # global generator alone
    assert first == sequence(sample_seed=1, seed=7)
    h = build_head("arcface", K, D, sample_rate=0.2, sample_seed=1)
    state = torch.get_rng_state()
    h(embeddings().float(), LABELS)
    assert torch.equal(state, torch.get_rng_state())
    assert h.last_sampled_classes.tolist() == first[0]


# -- the loss over the sampled classes -----------------------------------------------------


def loop_target(name: str, h: torch.nn.Module):
    s, m = h.s, getattr(h, "m", 0.0)
    if name == "normface":
        return lambda c: s * c
    if name == "cosface":
        return lambda c: s * (c - m)
    if name == "arcface":
        return lambda c: ref.arcface_target(c, s, m, h.gradient)
    return lambda c: s * ref.sphereface_psi(math.acos(c), m)


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_loss_is_the_cross_entropy_over_exactly_the_sampled_classes(name):
    h = head(name, sample_rate=0.2)
    if name == "softmax":
        with torch.no_grad():
            h.bias.copy_(torch.linspace(-0.5, 0.5, K, dtype=torch.float64))
    loss, stats, _, grads = step(h, embeddings())
    classes = h.last_sampled_classes.tolist()
    assert len(classes) == 8 and set(LABELS.tolist()) <= set(classes)
    X = embeddings().tolist()
    W = [h.weight[i].tolist() for i in classes]
    columns = [classes.index(y) for y in LABELS.tolist()]
    if name == "softmax":
        expected = ref.linear_ce_loss(X, W, h.bias.detach()[classes].tolist(), columns)
    else:
        expected = ref.ce_loss(X, W, columns, h.s, loop_target(name, h))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # stats are over the sampled classes too
    cos = [[ref.cosine(x, w) / ref.norm(w) for w in W] for x in X]
    negatives = [c for row, y in zip(cos, columns) for j, c in enumerate(row) if j != y]
    assert stats["neg_cos"].item() == pytest.approx(sum(negatives) / len(negatives), rel=1e-12)
    # only the sampled proxies (and, for softmax, biases) get a gradient, exactly zero elsewhere
    unsampled = [i for i in range(K) if i not in classes]
    for key in ("weight", "bias") if name == "softmax" else ("weight",):
        assert torch.count_nonzero(grads[key][unsampled]) == 0
        assert bool((grads[key][classes].reshape(len(classes), -1).abs().sum(1) > 0).all())


def test_cosface_gradients_equal_the_sampled_reference():
    """CosFace's target has slope s, so ce_detached_grads is its exact gradient."""
    h = head("cosface", sample_rate=0.3)
    _, _, x_grad, grads = step(h, embeddings())
    classes = h.last_sampled_classes.tolist()
    X, W = embeddings().tolist(), [h.weight[i].tolist() for i in classes]
    columns = [classes.index(y) for y in LABELS.tolist()]
    ex, ew = ref.ce_detached_grads(X, W, columns, h.s, loop_target("cosface", h))
    expected_w = torch.zeros(K, D, dtype=torch.float64)
    expected_w[classes] = torch.tensor(ew, dtype=torch.float64)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(x_grad, torch.tensor(ex, dtype=torch.float64), **tol)
    torch.testing.assert_close(grads["weight"], expected_w, **tol)


def test_unsampled_proxies_stay_unit_length():
    h = head("cosface", sample_rate=0.1)
    with torch.no_grad():
        h.weight.mul_(3.0)
    h(embeddings(), LABELS)
    torch.testing.assert_close(h.weight.norm(dim=1), torch.ones(K, dtype=torch.float64))


# -- resume ---------------------------------------------------------------------------------


def _train(h: torch.nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for i in steps:
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(5, D, generator=gen, dtype=torch.float64)
        y = torch.randint(0, K, (5,), generator=gen)
        opt.zero_grad()
        h(x, y).backward()
        opt.step()


def test_resume_from_a_state_dict_draws_what_an_uninterrupted_run_draws():
    def fresh():
        h = head("arcface", sample_rate=0.25, sample_seed=4)
        return h, torch.optim.SGD(h.parameters(), lr=0.5, momentum=0.9)

    straight, opt = fresh()
    _train(straight, opt, range(6))
    first, opt = fresh()
    _train(first, opt, range(3))
    saved = ({k: v.clone() for k, v in first.state_dict().items()}, opt.state_dict())
    assert int(saved[0]["sample_draws"]) == 3
    resumed, opt = fresh()
    resumed.load_state_dict(saved[0])
    opt.load_state_dict(saved[1])
    _train(resumed, opt, range(3, 6))
    assert torch.equal(resumed.weight, straight.weight)
    assert torch.equal(resumed.last_sampled_classes, straight.last_sampled_classes)


# -- the class-sharded heads in one process -------------------------------------------------


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_world_of_one_sharded_head_equals_the_plain_sampled_head(name):
    plain = head(name, seed=11, sample_rate=0.3, sample_seed=11)
    sharded = build_sharded_head(name, K, D, seed=11, sample_rate=0.3, **params(name)).double()
    assert sharded.sample_seed == 11  # defaults to the run's seed
    for draw in range(2):
        a, b = step(plain, embeddings(draw)), step(sharded, embeddings(draw))
        assert torch.equal(plain.last_sampled_classes, sharded.last_sampled_classes)
        torch.testing.assert_close(a[0], b[0], rtol=1e-13, atol=0)
        for key in a[1]:
            torch.testing.assert_close(a[1][key], b[1][key], rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(a[2], b[2], rtol=1e-13, atol=1e-15)
        for key in a[3]:
            torch.testing.assert_close(a[3][key], b[3][key], rtol=1e-13, atol=1e-15)
    state = sharded.full_state_dict()
    assert int(state["sample_draws"]) == 2
    plain.load_state_dict(state)  # strict: the draw counter converts like a parameter
    sharded.load_full_state_dict(plain.state_dict())


def test_sharded_sample_seed_is_the_run_seed_unless_given():
    default = build_sharded_head("cosface", K, D, seed=3, sample_rate=0.5)
    assert default.sample_seed == 3
    assert "m=0.35, sample_rate=0.5, sample_seed=3, init='full'" in repr(default)
    given = build_sharded_head("softmax", K, D, seed=3, sample_rate=0.5, sample_seed=8)
    assert given.sample_seed == 8 and repr(given).endswith("sample_rate=0.5, sample_seed=8)")


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_sample_rate_outside_zero_one_is_refused(name, bad):
    with pytest.raises(ValueError, match=rf"{name}: sample_rate must be"):
        build_head(name, K, D, sample_rate=bad)
    with pytest.raises(ValueError, match=rf"{name}: sample_rate must be"):
        build_sharded_head(name, K, D, sample_rate=bad)


def test_bad_sample_seed_and_no_sampling_for_sphereface2():
    with pytest.raises(ValueError, match="cosface: sample_seed must be an int, got 1.5"):
        build_head("cosface", K, D, sample_seed=1.5)
    for name in ("sphereface2", "sphereface2_fused"):
        with pytest.raises(ValueError, match="unknown parameter.s. sample_rate"):
            build_head(name, K, D, sample_rate=0.5)
