"""Sharded heads in a single process (a world of one): exactly the plain heads, plus the
builder's errors, the init modes and the state-dict conversion helpers."""

from __future__ import annotations

import pytest
import torch

from sphereface2.heads import HEADS, build_head
from sphereface2.heads.sharded import (
    ShardedMarginSoftmaxHead,
    ShardedSoftmaxHead,
    ShardedSphereFace2Head,
    build_sharded_head,
    init_proxy_rows,
    merge_state_dicts,
    sharded_head_names,
    split_state_dict,
)
from sphereface2.registry import UnknownNameError

K, D, SEED = 7, 5, 4
PAPER_M = {"C": 0.4, "A": 0.5, "M": 1.7}
HEAD_PARAMS = [
    *[
        ("sphereface2", {"margin_type": t, "m": m, "gradient": g})
        for t, m in PAPER_M.items()
        for g in ("full", "detached")
    ],
    ("softmax", {}),
    ("normface", {}),
    ("cosface", {}),
    ("arcface", {"gradient": "full"}),
    ("arcface", {"gradient": "detached"}),
    ("sphereface", {"gradient": "detached"}),
    ("sphereface", {"gradient": "full"}),
]


def _pair(name: str, params: dict):
    torch.manual_seed(SEED)
    plain = build_head(name, K, D, **params)
    return plain, build_sharded_head(name, K, D, seed=SEED, **params)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 1.7 * torch.randn(6, D, generator=gen), torch.randint(0, K, (6,), generator=gen)


@pytest.mark.parametrize(("name", "params"), HEAD_PARAMS, ids=lambda v: str(v))
def test_world_of_one_is_exactly_the_plain_head(name: str, params: dict) -> None:
    plain, sharded = _pair(name, params)
    assert sorted(sharded.state_dict()) == sorted(plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(sharded.state_dict()[key], value), key
    x, y = _batch()
    xp, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_p, stats_p = plain(xp, y, return_stats=True)
    loss_s, stats_s = sharded(xs, y, return_stats=True)
    (loss_p * 2.0).backward()
    (loss_s * 2.0).backward()
    assert torch.equal(loss_p, loss_s)
    assert torch.equal(xp.grad, xs.grad)
    for (key, param), (_, other) in zip(plain.named_parameters(), sharded.named_parameters()):
        assert torch.equal(param.grad, other.grad), key
        assert torch.equal(param, other), key  # both re-projected the proxies the same way
    assert sorted(stats_p) == sorted(stats_s)
    for key in stats_p:
        torch.testing.assert_close(stats_s[key], stats_p[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_world_of_one_fused_is_exactly_the_fused_head(margin_type: str) -> None:
    pytest.importorskip("sphereface2.heads.fused_sphereface2")
    params = {"margin_type": margin_type, "m": PAPER_M[margin_type], "chunk_size": 3}
    plain, sharded = _pair("sphereface2_fused", params)
    assert sharded.fused and "fused=True, chunk_size=3" in repr(sharded)
    x, y = _batch()
    xp, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_p, stats_p = plain(xp, y, return_stats=True)
    loss_s, stats_s = sharded(xs, y, return_stats=True)
    loss_p.backward()
    loss_s.backward()
    assert torch.equal(loss_p, loss_s) and torch.equal(xp.grad, xs.grad)
    assert torch.equal(plain.weight.grad, sharded.weight.grad)
    assert torch.equal(plain.bias.grad, sharded.bias.grad)
    for key in stats_p:
        torch.testing.assert_close(stats_s[key], stats_p[key], rtol=1e-6, atol=1e-7)


def test_two_forwards_before_one_backward() -> None:
    plain, sharded = _pair("sphereface2", {})
    (x1, y1), (x2, y2) = _batch(1), _batch(2)
    (plain(x1, y1) + plain(x2, y2)).backward()
    (sharded(x1, y1) + sharded(x2, y2)).backward()
    assert torch.equal(plain.weight.grad, sharded.weight.grad)
    assert torch.equal(plain.bias.grad, sharded.bias.grad)


def test_builder_dispatches_to_the_right_class() -> None:
    assert isinstance(build_sharded_head("sphereface2", K, D), ShardedSphereFace2Head)
    assert isinstance(build_sharded_head("softmax", K, D), ShardedSoftmaxHead)
    head = build_sharded_head("arcface", K, D, s=64.0, m=0.3)
    assert isinstance(head, ShardedMarginSoftmaxHead)
    assert (head.head_name, head.s) == ("arcface", 64.0)
    assert "m=0.3" in repr(head) and "classes=[0, 7)" in repr(head)
    baselines = {"sphereface2", "softmax", "normface", "cosface", "arcface", "sphereface"}
    assert baselines <= set(sharded_head_names())


def test_builder_errors_come_from_the_plain_registry() -> None:
    with pytest.raises(UnknownNameError, match="unknown head 'adaface'; valid names"):
        build_sharded_head("adaface", K, D)
    with pytest.raises(ValueError, match="got unknown parameter"):
        build_sharded_head("cosface", K, D, margin_type="C")
    with pytest.raises(ValueError, match="sphereface2: lam must be < 1"):
        build_sharded_head("sphereface2", K, D, lam=1.5)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        build_sharded_head("sphereface2", 1, D)
    with pytest.raises(ValueError, match="init must be one of 'full', 'shard', got 'zeros'"):
        build_sharded_head("sphereface2", K, D, init="zeros")
    with pytest.raises(ValueError, match="seed must be an int, got 1.5"):
        build_sharded_head("normface", K, D, seed=1.5)
    with pytest.raises(ValueError, match="head 'sphereface2' is not a margin-softmax head"):
        ShardedMarginSoftmaxHead("sphereface2", K, D)
    with pytest.raises(ValueError, match="head 'arcface' is not a SphereFace2 head"):
        ShardedSphereFace2Head(K, D, name="arcface")


def test_a_head_without_sharded_version_is_refused(monkeypatch) -> None:
    class Plain(torch.nn.Module):
        head_name = "plain"

        def __init__(self, num_classes: int, embedding_dim: int) -> None:
            super().__init__()

    monkeypatch.setitem(HEADS._builders, "zz_plain", Plain)
    with pytest.raises(ValueError, match="head 'zz_plain' has no sharded version; sharded"):
        build_sharded_head("zz_plain", K, D)


def test_building_does_not_touch_the_global_generator() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for name in ("sphereface2", "softmax", "arcface"):
        build_sharded_head(name, K, D, seed=3)
        build_sharded_head(name, K, D, seed=3, init="shard")
    assert torch.equal(torch.rand(3), expected)


def test_full_init_rows_are_the_plain_heads_rows() -> None:
    torch.manual_seed(9)
    plain = build_head("sphereface2", 11, D)
    for start, end in [(0, 11), (0, 4), (4, 8), (8, 11), (5, 5)]:
        rows = init_proxy_rows(11, D, start, end, mode="full", seed=9)
        assert torch.equal(rows, plain.weight.detach()[start:end])
    torch.manual_seed(9)
    softmax = build_head("softmax", 11, D)  # not re-normalised
    raw = init_proxy_rows(11, D, 3, 9, seed=9, renormalise=False)
    assert torch.equal(raw, softmax.weight.detach()[3:9])


def test_shard_init_has_the_global_xavier_spread() -> None:
    num_classes, dim = 3000, 64
    rows = init_proxy_rows(num_classes, dim, 1000, 2000, mode="shard", seed=1, renormalise=False)
    expected_std = (2.0 / (num_classes + dim)) ** 0.5
    assert rows.shape == (1000, dim)
    assert abs(float(rows.std()) / expected_std - 1.0) < 0.02
    assert abs(float(rows.mean())) < 3 * expected_std / (rows.numel() ** 0.5)
    other = init_proxy_rows(num_classes, dim, 2000, 3000, mode="shard", seed=1, renormalise=False)
    assert not torch.allclose(rows, other)
    unit = init_proxy_rows(num_classes, dim, 1000, 2000, mode="shard", seed=1)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(1000))


def test_init_proxy_rows_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        init_proxy_rows(5, 2, 0, 5, mode="xavier")
    with pytest.raises(ValueError, match=r"need 0 <= start <= end <= 5"):
        init_proxy_rows(5, 2, 3, 6)


def test_checkpoint_helpers_in_one_process() -> None:
    plain, sharded = _pair("sphereface2", {})
    assert torch.equal(sharded.gather_full_weight(), plain.weight.detach())
    assert sharded.full_state_dict().keys() == plain.state_dict().keys()
    new = torch.nn.functional.normalize(torch.randn(K, D), dim=1)
    sharded.load_full_weight(new)
    assert torch.equal(sharded.weight.detach(), new)
    with pytest.raises(ValueError, match=r"full weight has shape \(6, 5\), expected \(7, 5\)"):
        sharded.load_full_weight(torch.zeros(6, D))
    with pytest.raises(ValueError, match=r"state dict has keys \['weight'\], expected"):
        sharded.load_full_state_dict({"weight": new})
    with pytest.raises(ValueError, match=r"bias has shape \(1,\), expected \(\)"):
        sharded.load_full_state_dict({"weight": new, "bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="'bias' is not sharded"):
        sharded.gather_full("bias")


def test_split_and_merge_state_dicts() -> None:
    torch.manual_seed(1)
    full = build_head("softmax", K, D).state_dict()
    shards = [split_state_dict(full, ("weight", "bias"), K, r, 3) for r in range(3)]
    assert [s["weight"].shape[0] for s in shards] == [3, 2, 2]
    merged = merge_state_dicts(shards, ("weight", "bias"))
    assert all(torch.equal(merged[k], full[k]) for k in full)

    sf2 = build_head("sphereface2", K, D).state_dict()
    shards = [split_state_dict(sf2, ("weight",), K, r, 2) for r in range(2)]
    assert torch.equal(shards[1]["bias"], sf2["bias"])
    assert torch.equal(merge_state_dicts(shards, ("weight",))["weight"], sf2["weight"])
    shards[1]["bias"] = shards[1]["bias"] + 1.0
    with pytest.raises(ValueError, match="replicated 'bias' differs between shard 0 and shard 1"):
        merge_state_dicts(shards, ("weight",))
    with pytest.raises(ValueError, match="shard 1 has keys"):
        merge_state_dicts([sf2, {"weight": sf2["weight"]}], ("weight",))
    with pytest.raises(ValueError, match="no shards"):
        merge_state_dicts([], ("weight",))
    with pytest.raises(ValueError, match="weight has 7 rows, expected 8"):
        split_state_dict(sf2, ("weight",), 8, 0, 2)


def test_batch_checks_name_the_sharded_head() -> None:
    head = build_sharded_head("cosface", K, D)
    with pytest.raises(ValueError, match=r"sharded cosface: label 7 at batch index 1 is outside"):
        head(torch.randn(2, D), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="sharded cosface: embeddings have dimension 4"):
        head(torch.randn(2, 4), torch.tensor([0, 1]))
    unchecked = build_sharded_head("cosface", K, D, validate=False)
    unchecked(torch.full((2, D), float("nan")), torch.tensor([0, 1]))  # no value checks


def test_a_head_built_before_the_process_group_is_refused(monkeypatch) -> None:
    head = build_sharded_head("sphereface2", K, D)
    monkeypatch.setattr("sphereface2.heads.sharded_base.get_world_size", lambda group=None: 2)
    with pytest.raises(RuntimeError, match="built for a world of 1 but the process group now"):
        head(torch.randn(2, D), torch.tensor([0, 1]))


@pytest.mark.parametrize("margin_type", ["C", "A", "M"])
def test_sharded_sphereface2_fused_and_plain_implementations_agree(margin_type) -> None:
    x = torch.randn(6, D, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 6])
    out = {}
    for implementation in ("plain", "fused"):
        head = build_sharded_head(
            "sphereface2", K, D, margin_type=margin_type, implementation=implementation
        ).double()
        loss = head(x, y)
        grads = torch.autograd.grad(loss, [x, head.weight, head.bias])
        out[implementation] = (loss, *grads)
    for plain, fused in zip(out["plain"], out["fused"]):
        torch.testing.assert_close(fused, plain, rtol=1e-10, atol=1e-12)


def test_sharded_sphereface2_auto_takes_the_fused_path_for_large_batches(monkeypatch) -> None:
    head = build_sharded_head("sphereface2", K, D)  # implementation="auto"
    taken = []
    real = head._fused_partial
    monkeypatch.setattr(head, "_fused_partial", lambda *a: taken.append(1) or real(*a))
    head(torch.randn(4, D), torch.tensor([0, 1, 2, 3]))
    assert not taken  # 4 x 7 entries: the plain path
    monkeypatch.setattr("sphereface2.heads.fused_function.AUTO_MIN_ENTRIES", 28)
    head(torch.randn(4, D), torch.tensor([0, 1, 2, 3]))
    assert taken == [1]
