"""IResNet against arcface_torch: state-dict names and shapes, init, and a functional forward.

The expected names, shapes and the reference forward below are written from reading
arcface_torch's ``backbones/iresnet.py`` (InsightFace); they do not use our module code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sphereface2.backbones import IBasicBlock, build_backbone

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
LAYERS = {"iresnet18": (2, 2, 2, 2), "iresnet50": (3, 4, 14, 3)}


def _bn(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (f"{prefix}.{suffix}", () if suffix == "num_batches_tracked" else (channels,))
        for suffix in BN_SUFFIXES
    ]


def arcface_entries(
    layers: tuple[int, ...], width: int = 64, embedding_dim: int = 512, map_area: int = 49
) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state-dict entry of an arcface_torch IResNet, in order."""
    stages = [width, 2 * width, 4 * width, 8 * width]
    entries = [("conv1.weight", (width, 3, 3, 3)), *_bn("bn1", width), ("prelu.weight", (width,))]
    inplanes = width
    for index, (blocks, planes) in enumerate(zip(layers, stages), start=1):
        for block in range(blocks):
            p = f"layer{index}.{block}"
            entries += _bn(f"{p}.bn1", inplanes)
            entries.append((f"{p}.conv1.weight", (planes, inplanes, 3, 3)))
            entries += _bn(f"{p}.bn2", planes)
            entries.append((f"{p}.prelu.weight", (planes,)))
            entries.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
            entries += _bn(f"{p}.bn3", planes)
            if block == 0:  # stride 2 in every stage's first block -> projected shortcut
                entries.append((f"{p}.downsample.0.weight", (planes, inplanes, 1, 1)))
                entries += _bn(f"{p}.downsample.1", planes)
            inplanes = planes
    entries += _bn("bn2", stages[-1])
    entries += [
        ("fc.weight", (embedding_dim, stages[-1] * map_area)),
        ("fc.bias", (embedding_dim,)),
    ]
    entries += _bn("features", embedding_dim)
    return entries


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_state_dict_names_and_shapes_match_arcface_torch(name: str) -> None:
    with torch.device("meta"):  # full size without allocating memory
        net = build_backbone(name)
    got = [(key, tuple(value.shape)) for key, value in net.state_dict().items()]
    assert got == arcface_entries(LAYERS[name])


def test_iresnet18_key_count_and_samples() -> None:
    with torch.device("meta"):
        keys = list(build_backbone("iresnet18").state_dict())
    # stem 7 + 8 blocks x 18 + 4 projections x 6 + head 12
    assert len(keys) == 187
    assert keys[:7] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "prelu.weight",
    ]
    for key in [
        "layer1.0.downsample.0.weight",
        "layer4.1.prelu.weight",
        "layer3.1.bn3.running_var",
        "bn2.num_batches_tracked",
        "features.running_mean",
    ]:
        assert key in keys
    assert "layer1.1.downsample.0.weight" not in keys
    assert keys[-7:] == [
        "fc.weight",
        "fc.bias",
        "features.weight",
        "features.bias",
        "features.running_mean",
        "features.running_var",
        "features.num_batches_tracked",
    ]


def _random_arcface_state(entries: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in entries:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith("conv1.weight") or key.endswith("conv2.weight"):
            state[key] = torch.randn(shape, generator=generator) * 0.2
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.5 + (
                1.0 if key.endswith("bn1.weight") else 0.0
            )
    state["features.weight"] = torch.ones_like(state["features.weight"])
    return state


def _bn_eval(x: torch.Tensor, s: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        s[f"{prefix}.running_mean"],
        s[f"{prefix}.running_var"],
        s[f"{prefix}.weight"],
        s[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def reference_forward(
    s: dict[str, torch.Tensor], layers: tuple[int, ...], x: torch.Tensor
) -> torch.Tensor:
    """arcface_torch's IResNet forward in eval mode, written with torch.nn.functional."""
    x = F.conv2d(x, s["conv1.weight"], padding=1)
    x = F.prelu(_bn_eval(x, s, "bn1"), s["prelu.weight"])
    for index, blocks in enumerate(layers, start=1):
        for block in range(blocks):
            p = f"layer{index}.{block}"
            stride = 2 if block == 0 else 1
            out = F.conv2d(_bn_eval(x, s, f"{p}.bn1"), s[f"{p}.conv1.weight"], padding=1)
            out = F.prelu(_bn_eval(out, s, f"{p}.bn2"), s[f"{p}.prelu.weight"])
            out = F.conv2d(out, s[f"{p}.conv2.weight"], stride=stride, padding=1)
            out = _bn_eval(out, s, f"{p}.bn3")
            if block == 0:
                shortcut = F.conv2d(x, s[f"{p}.downsample.0.weight"], stride=2)
                x = out + _bn_eval(shortcut, s, f"{p}.downsample.1")
            else:
                x = out + x
    x = torch.flatten(_bn_eval(x, s, "bn2"), 1)
    x = F.linear(x, s["fc.weight"], s["fc.bias"])
    return _bn_eval(x, s, "features")


def test_arcface_state_dict_loads_strictly_and_computes_arcface_forward() -> None:
    # Width 1/8 (8..64 channels) at 32x32 keeps it cheap; names do not depend on size.
    layers = LAYERS["iresnet18"]
    net = build_backbone("iresnet18", embedding_dim=16, width=0.125, input_size=(32, 32))
    state = _random_arcface_state(arcface_entries(layers, width=8, embedding_dim=16, map_area=4))
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = net.eval()(images)
    torch.testing.assert_close(got, reference_forward(state, layers, images))


def test_arcface_init_and_normalisation_settings() -> None:
    net = build_backbone("iresnet18", embedding_dim=64, width=0.5)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.1) < 0.002  # every conv N(0, 0.1)
    assert all(c.bias is None for c in convs)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1 + 8 * 3 + 4 + 1 + 1
    for norm in norms:
        assert norm.eps == 1e-5 and norm.momentum == 0.1 and norm.affine
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    # The embedding BN's scale is fixed at 1; its shift is trained.
    assert not net.features.weight.requires_grad
    assert net.features.bias.requires_grad
    # One PReLU slope per channel, PyTorch's default 0.25.
    assert net.prelu.num_parameters == 32
    assert [net.layer2[1].prelu.num_parameters, net.layer4[0].prelu.num_parameters] == [64, 256]
    assert torch.all(net.prelu.weight == 0.25)


def test_stride_sits_on_the_second_conv() -> None:
    block = IBasicBlock(8, 16, stride=2)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample is not None and block.downsample[0].stride == (2, 2)
    assert IBasicBlock(16, 16).downsample is None


def test_head_runs_in_float32_under_autocast() -> None:
    net = build_backbone("iresnet18", embedding_dim=8, width=0.125, input_size=(32, 32)).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = net(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(images)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, atol=0.1, rtol=0.05)
