"""Every registered backbone at a tiny width and input: shapes, gradients, train/eval behaviour."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sphereface2.backbones import BACKBONES, build_backbone

TINY_SIZE = (32, 48)  # non-square on purpose: a 2x3 final map
EMBEDDING_DIM = 12


def _variants() -> list[tuple[str, dict[str, Any]]]:
    variants: list[tuple[str, dict[str, Any]]] = []
    for name in BACKBONES.names():
        if name.startswith("sfnet"):
            variants += [(name, {"batch_norm": False}), (name, {"batch_norm": True})]
        else:
            variants.append((name, {}))
    return variants


VARIANTS = _variants()
IDS = [f"{name}-{'bn' if options.get('batch_norm') else 'plain'}" for name, options in VARIANTS]


def _tiny(name: str, options: dict[str, Any], width: float = 0.0625) -> torch.nn.Module:
    return build_backbone(
        name, embedding_dim=EMBEDDING_DIM, width=width, input_size=TINY_SIZE, **options
    )


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_output_shape_and_attributes(name: str, options: dict[str, Any]) -> None:
    net = _tiny(name, options).eval()
    assert net.embedding_dim == EMBEDDING_DIM
    assert net.input_size == TINY_SIZE
    with torch.no_grad():
        out = net(torch.randn(2, 3, *TINY_SIZE))
    assert out.shape == (2, EMBEDDING_DIM)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["sfnet20", "iresnet18"])
def test_forward_backward_reaches_every_trainable_parameter(name: str) -> None:
    net = _tiny(name, {}).train()
    out = net(torch.randn(3, 3, *TINY_SIZE))
    out.square().sum().backward()
    for param_name, param in net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, param_name
            assert torch.isfinite(param.grad).all(), param_name
            assert param.grad.abs().sum() > 0, param_name


def test_sfnet20_quarter_width_at_56_trains_on_cpu() -> None:
    """The tiny demo model: sfnet20 width 0.25 at 56x56; one SGD step lowers a toy loss."""
    net = build_backbone("sfnet20", embedding_dim=16, width=0.25, input_size=(56, 56))
    assert [net.layer1[0].conv.out_channels, net.layer4[0].conv.out_channels] == [16, 128]
    images, target = torch.randn(4, 3, 56, 56), torch.randn(4, 16)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = (net(images) - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]


def test_width_rounds_channels_and_never_reaches_zero() -> None:
    net = build_backbone("iresnet18", embedding_dim=4, width=0.001, input_size=(16, 16))
    assert net.conv1.out_channels == 1
    assert all(getattr(net, f"layer{i}")[0].conv2.out_channels == 1 for i in range(1, 5))
    assert net.fc.in_features == 1
    net = build_backbone("sfnet4", embedding_dim=4, width=0.3, input_size=(16, 32))
    # round(64 * 0.3) = 19, round(512 * 0.3) = 154, final map 1x2
    assert net.layer1[0].conv.out_channels == 19
    assert net.fc.in_features == 154 * 2
    assert net(torch.randn(1, 3, 16, 32)).shape == (1, 4)


@pytest.mark.parametrize(("name", "options"), VARIANTS[::3], ids=IDS[::3])
def test_eval_mode_is_deterministic(name: str, options: dict[str, Any]) -> None:
    net = _tiny(name, options).eval()
    images = torch.randn(2, 3, *TINY_SIZE)
    with torch.no_grad():
        assert torch.equal(net(images), net(images))


@pytest.mark.parametrize(
    ("name", "options"), [("sfnet10", {"batch_norm": True}), ("iresnet18", {})]
)
def test_batch_norm_models_differ_between_train_and_eval(
    name: str, options: dict[str, Any]
) -> None:
    net = _tiny(name, options)
    images = torch.randn(4, 3, *TINY_SIZE)
    with torch.no_grad():
        train_out = net.train()(images)
        eval_out = net.eval()(images)
    assert not torch.allclose(train_out, eval_out)


def test_paper_sfnet_is_the_same_in_train_and_eval() -> None:
    net = _tiny("sfnet10", {"batch_norm": False})
    images = torch.randn(2, 3, *TINY_SIZE)
    with torch.no_grad():
        assert torch.equal(net.train()(images), net.eval()(images))


@pytest.mark.parametrize("name", ["sfnet4", "iresnet18"])
def test_dropout_is_active_only_in_training(name: str) -> None:
    net = build_backbone(name, embedding_dim=8, width=0.125, input_size=(32, 32), dropout=0.5)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(images), net(images))
        net.train()
        assert not torch.equal(net(images), net(images))
