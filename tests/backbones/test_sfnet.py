"""SFNet: the paper version's init and block layout, and the BN variant's layout."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sphereface2.backbones import SFBlock, StageConv, build_backbone


def test_paper_init_biases_zero_block_std_001_stage_xavier() -> None:
    net = build_backbone("sfnet20", batch_norm=False)
    stage_convs = [m.conv for m in net.modules() if isinstance(m, StageConv)]
    block_convs = [c for m in net.modules() if isinstance(m, SFBlock) for c in (m.conv1, m.conv2)]
    assert len(stage_convs) == 4 and len(block_convs) == 2 * (1 + 2 + 4 + 1)
    for conv in stage_convs + block_convs:
        assert conv.bias is not None and torch.all(conv.bias == 0)
    block_weights = torch.cat([c.weight.flatten() for c in block_convs])
    assert abs(block_weights.std().item() - 0.01) < 2e-4
    assert abs(block_weights.mean().item()) < 2e-4
    for conv in stage_convs:
        fan_in = conv.in_channels * 9
        fan_out = conv.out_channels * 9
        xavier_std = math.sqrt(2.0 / (fan_in + fan_out))
        assert abs(conv.weight.std().item() / xavier_std - 1) < 0.1, conv
    # No normalisation anywhere in the paper network, nothing after the embedding Linear.
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert isinstance(net.features, torch.nn.Identity)


def test_bn_variant_layout_and_init() -> None:
    net = build_backbone("sfnet10", embedding_dim=64, batch_norm=True, width=0.5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == len(convs) == 4 + 2 * 3
    assert isinstance(net.features, torch.nn.BatchNorm1d) and net.features.weight.requires_grad
    conv = net.layer3[1].conv1  # Kaiming normal, fan_out mode
    assert abs(conv.weight.std().item() / math.sqrt(2.0 / (conv.out_channels * 9)) - 1) < 0.05


def _paper_reference(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """OpenSphere's paper SFNet: stage relu(conv); block x + relu(conv2(relu(conv1(x))))."""
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        head, *blocks = list(stage)
        x = F.relu(F.conv2d(x, head.conv.weight, head.conv.bias, stride=2, padding=1))
        for block in blocks:
            out = F.relu(F.conv2d(x, block.conv1.weight, block.conv1.bias, padding=1))
            x = x + F.relu(F.conv2d(out, block.conv2.weight, block.conv2.bias, padding=1))
    return F.linear(torch.flatten(x, 1), net.fc.weight, net.fc.bias)


def _bn(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return F.batch_norm(
        x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
    )


def _bn_reference(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """OpenSphere's SFNet with BN (eval): block relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        head, *blocks = list(stage)
        x = F.relu(_bn(F.conv2d(x, head.conv.weight, stride=2, padding=1), head.bn))
        for block in blocks:
            out = F.relu(_bn(F.conv2d(x, block.conv1.weight, padding=1), block.bn1))
            x = F.relu(x + _bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2))
    return _bn(F.linear(torch.flatten(x, 1), net.fc.weight, net.fc.bias), net.features)


def _randomise(net: torch.nn.Module) -> None:
    """Large random weights and BN statistics so that every ReLU and BN placement matters."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.3
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)


def test_paper_forward_matches_reference_layout() -> None:
    net = build_backbone("sfnet20", embedding_dim=8, width=0.125, input_size=(32, 32)).eval()
    _randomise(net)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(images), _paper_reference(net, images))


def test_bn_forward_matches_reference_layout() -> None:
    net = build_backbone(
        "sfnet20", embedding_dim=8, batch_norm=True, width=0.125, input_size=(32, 32)
    ).eval()
    _randomise(net)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(images), _bn_reference(net, images))


def test_paper_state_dict_names() -> None:
    """OpenSphere's paper-version names (layerK.0.conv, layerK.J.conv1/conv2, fc)."""
    with torch.device("meta"):
        keys = list(build_backbone("sfnet20").state_dict())
    expected = []
    for index, blocks in enumerate((1, 2, 4, 1), start=1):
        expected += [f"layer{index}.0.conv.weight", f"layer{index}.0.conv.bias"]
        for block in range(1, blocks + 1):
            for conv in ("conv1", "conv2"):
                expected += [
                    f"layer{index}.{block}.{conv}.weight",
                    f"layer{index}.{block}.{conv}.bias",
                ]
    assert keys == [*expected, "fc.weight", "fc.bias"]
