"""MobileFaceNet against arcface_torch: state-dict names and shapes, a functional forward,
init, options, and the exact parameter and MAC counts.

The expected names, shapes, the reference forward and the closed-form counts below are
written from reading arcface_torch's ``backbones/mobilefacenet.py`` (InsightFace); they do
not use our module code.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sphereface2.backbones import build_backbone, count_macs, count_parameters

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
MBF = {"blocks": (1, 4, 6, 2), "scale": 2}
MBF_LARGE = {"blocks": (2, 8, 12, 4), "scale": 4}
# The published-size model at 512-d and 112x112 (README's Models table).
MBF_PARAMS = 2_059_520
MBF_MACS = 437_520_896
MBF_LARGE_PARAMS = 6_314_880
MBF_LARGE_MACS = 1_816_482_816

Entries = list[tuple[str, tuple[int, ...]]]


def _bn(prefix: str, channels: int) -> Entries:
    return [
        (f"{prefix}.{suffix}", () if suffix == "num_batches_tracked" else (channels,))
        for suffix in BN_SUFFIXES
    ]


def _conv_block(prefix: str, cin: int, cout: int, k: int = 1, groups: int = 1) -> Entries:
    """arcface_torch ConvBlock: layers = (Conv2d, BatchNorm2d, PReLU)."""
    return [
        (f"{prefix}.layers.0.weight", (cout, cin // groups, k, k)),
        *_bn(f"{prefix}.layers.1", cout),
        (f"{prefix}.layers.2.weight", (cout,)),
    ]


def _linear_block(prefix: str, cin: int, cout: int, k: int = 1, groups: int = 1) -> Entries:
    """arcface_torch LinearBlock: layers = (Conv2d, BatchNorm2d)."""
    return [
        (f"{prefix}.layers.0.weight", (cout, cin // groups, k, k)),
        *_bn(f"{prefix}.layers.1", cout),
    ]


def _depthwise(prefix: str, cin: int, cout: int, groups: int) -> Entries:
    """arcface_torch DepthWise: 1x1 ConvBlock, depthwise 3x3 ConvBlock, 1x1 LinearBlock."""
    return [
        *_conv_block(f"{prefix}.layers.0", cin, groups),
        *_conv_block(f"{prefix}.layers.1", groups, groups, 3, groups),
        *_linear_block(f"{prefix}.layers.2", groups, cout),
    ]


def _residual(prefix: str, c: int, num_block: int, groups: int) -> Entries:
    entries: Entries = []
    for i in range(num_block):
        entries += _depthwise(f"{prefix}.layers.{i}", c, c, groups)
    return entries


def arcface_entries(
    blocks: tuple[int, ...], scale: int, embedding_dim: int = 512, kernel: int = 7
) -> Entries:
    """(name, shape) of every state-dict entry of an arcface_torch MobileFaceNet, in order."""
    c, c2 = 64 * scale, 128 * scale
    entries = _conv_block("layers.0", 3, c, 3)
    if blocks[0] == 1:
        entries += _conv_block("layers.1", c, c, 3, groups=64)
    else:
        entries += _residual("layers.1", c, blocks[0], 128)
    entries += _depthwise("layers.2", c, c, 128)
    entries += _residual("layers.3", c, blocks[1], 128)
    entries += _depthwise("layers.4", c, c2, 256)
    entries += _residual("layers.5", c2, blocks[2], 256)
    entries += _depthwise("layers.6", c2, c2, 512)
    entries += _residual("layers.7", c2, blocks[3], 256)
    entries += _conv_block("conv_sep", c2, 512)
    entries += _linear_block("features.layers.0", 512, 512, kernel, groups=512)
    entries.append(("features.layers.2.weight", (embedding_dim, 512)))
    entries += _bn("features.layers.3", embedding_dim)
    return entries


@pytest.mark.parametrize("options", [MBF, MBF_LARGE], ids=["mbf", "mbf_large"])
def test_state_dict_names_and_shapes_match_arcface_torch(options: dict) -> None:
    with torch.device("meta"):
        net = build_backbone("mobilefacenet", **options)
    got = [(key, tuple(value.shape)) for key, value in net.state_dict().items()]
    assert got == arcface_entries(options["blocks"], options["scale"])


def test_mbf_key_count_and_samples() -> None:
    with torch.device("meta"):
        keys = list(build_backbone("mobilefacenet").state_dict())
    # stem 7, grouped conv 7, 3 strided + 12 residual bottlenecks x 20, conv_sep 7, GDC 12
    assert len(keys) == 7 + 7 + 15 * 20 + 7 + 12
    for key in [
        "layers.1.layers.0.weight",
        "layers.3.layers.3.layers.2.layers.1.running_var",
        "layers.5.layers.5.layers.1.layers.2.weight",
        "layers.7.layers.1.layers.0.layers.0.weight",
        "conv_sep.layers.2.weight",
        "features.layers.0.layers.0.weight",
    ]:
        assert key in keys
    assert "features.layers.2.bias" not in keys  # the embedding Linear has no bias
    assert keys[-6:] == ["features.layers.2.weight"] + [
        f"features.layers.3.{s}" for s in BN_SUFFIXES
    ]


def _random_arcface_state(entries: Entries) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    state = {}
    for key, shape in entries:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(5)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 4 or key == "features.layers.2.weight":  # conv and Linear weights
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            state[key] = torch.randn(shape, generator=generator) * 0.1
        else:  # BN scales and PReLU slopes
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.5
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


def _conv_bn(x, s, p, stride=1, padding=0, groups=1, prelu=True):
    x = F.conv2d(x, s[f"{p}.layers.0.weight"], stride=stride, padding=padding, groups=groups)
    x = _bn_eval(x, s, f"{p}.layers.1")
    return F.prelu(x, s[f"{p}.layers.2.weight"]) if prelu else x


def _depthwise_forward(x, s, p, groups, stride):
    out = _conv_bn(x, s, f"{p}.layers.0")
    out = _conv_bn(out, s, f"{p}.layers.1", stride=stride, padding=1, groups=groups)
    return _conv_bn(out, s, f"{p}.layers.2", prelu=False)


def _residual_forward(x, s, p, num_block, groups):
    for i in range(num_block):
        x = x + _depthwise_forward(x, s, f"{p}.layers.{i}", groups, 1)
    return x


def reference_forward(
    s: dict[str, torch.Tensor], blocks: tuple[int, ...], x: torch.Tensor
) -> torch.Tensor:
    """arcface_torch's MobileFaceNet forward in eval mode, written with torch.nn.functional."""
    x = _conv_bn(x, s, "layers.0", stride=2, padding=1)
    if blocks[0] == 1:
        x = _conv_bn(x, s, "layers.1", padding=1, groups=64)
    else:
        x = _residual_forward(x, s, "layers.1", blocks[0], 128)
    x = _depthwise_forward(x, s, "layers.2", 128, 2)
    x = _residual_forward(x, s, "layers.3", blocks[1], 128)
    x = _depthwise_forward(x, s, "layers.4", 256, 2)
    x = _residual_forward(x, s, "layers.5", blocks[2], 256)
    x = _depthwise_forward(x, s, "layers.6", 512, 2)
    x = _residual_forward(x, s, "layers.7", blocks[3], 256)
    x = _conv_bn(x, s, "conv_sep")
    x = _conv_bn(x, s, "features.layers.0", groups=512, prelu=False).flatten(1)
    x = F.linear(x, s["features.layers.2.weight"])
    return _bn_eval(x, s, "features.layers.3")


@pytest.mark.parametrize(
    "options",
    [MBF, {"blocks": (2, 0, 1, 1), "scale": 1}],
    ids=["mbf", "residual-first-stage-scale1"],
)
def test_arcface_state_dict_loads_strictly_and_computes_arcface_forward(options: dict) -> None:
    net = build_backbone("mobilefacenet", embedding_dim=128, **options)
    state = _random_arcface_state(arcface_entries(options["blocks"], options["scale"], 128))
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = net.eval()(images)
        expected = reference_forward(state, options["blocks"], images)
    assert expected.abs().mean() > 0.1  # a meaningful signal reached the embedding
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_arcface_init_and_normalisation_settings() -> None:
    torch.manual_seed(0)
    net = build_backbone("mobilefacenet")
    stem = net.layers[0].layers[0].weight  # Kaiming normal, fan_out = 128 * 3 * 3
    assert abs(stem.std().item() - math.sqrt(2.0 / (128 * 9))) < 0.004
    linear = net.features.layers[2].weight  # fan_out = 512
    assert abs(linear.std().item() - math.sqrt(2.0 / 512)) < 0.002
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1 + 1 + 15 * 3 + 1 + 2
    for norm in norms:
        assert norm.eps == 1e-5 and norm.momentum == 0.1 and norm.affine
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
        assert norm.weight.requires_grad  # unlike IResNet, no BN scale is frozen
    prelus = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 1 + 1 + 15 * 2 + 1
    assert all(torch.all(p.weight == 0.25) for p in prelus)


def test_width_scales_every_channel_count_and_keeps_the_groups_valid() -> None:
    # round(64 * 0.35) = 22 groups, trunk 22 * 2 = 44 and round(128 * 0.35) * 2 = 90
    net = build_backbone("mobilefacenet", embedding_dim=8, width=0.35, input_size=(32, 32))
    first = net.layers[1].layers[0]
    assert (first.out_channels, first.groups) == (44, 22)
    assert net.layers[2].layers[0].layers[0].out_channels == round(128 * 0.35)
    assert net.layers[4].layers[2].layers[0].out_channels == 90
    assert net.conv_sep.layers[0].out_channels == round(512 * 0.35)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 8)


def test_gdc_kernel_covers_a_non_square_final_map() -> None:
    net = build_backbone("mobilefacenet", embedding_dim=8, width=0.0625, input_size=(32, 48))
    assert net.features.layers[0].layers[0].kernel_size == (2, 3)
    trunk = net.conv_sep(net.layers(torch.randn(1, 3, 32, 48)))
    assert trunk.shape[2:] == (2, 3)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"blocks": (1, 4, 6)}, "blocks"),
        ({"blocks": (1, 4, -1, 2)}, "blocks"),
        ({"blocks": (1, 4, 6.0, 2)}, "blocks"),
        ({"blocks": "1462"}, "blocks"),
        ({"scale": 0}, "scale"),
        ({"scale": 2.0}, "scale"),
        ({"scale": True}, "scale"),
        ({"width": 0}, "width"),
        ({"input_size": (8, 112)}, "input_size"),
    ],
)
def test_bad_options_name_the_option(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_backbone("mobilefacenet", **options)


def test_head_runs_in_float32_under_autocast() -> None:
    net = build_backbone("mobilefacenet", embedding_dim=8, width=0.125, input_size=(32, 32))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = net.eval()(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(images)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, atol=0.1, rtol=0.05)


def _bottleneck(cin: int, cout: int, e: int) -> tuple[int, int, int]:
    """(parameters, MACs per output pixel of the expand, of the depthwise+project)."""
    params = (cin * e + 3 * e) + (9 * e + 3 * e) + (e * cout + 2 * cout)
    return params, cin * e, 9 * e + e * cout


def closed_form(blocks: tuple[int, ...], scale: int, d: int = 512) -> tuple[int, int]:
    """Parameters and MACs at 112x112, counted from the architecture description."""
    c, c2 = 64 * scale, 128 * scale
    params = 27 * c + 3 * c
    macs = 56 * 56 * 27 * c
    if blocks[0] == 1:  # 3x3 conv with 64 groups at 56x56
        params += 9 * c * (c // 64) + 3 * c
        macs += 56 * 56 * 9 * c * (c // 64)
    else:
        p, expand, rest = _bottleneck(c, c, 128)
        params += blocks[0] * p
        macs += blocks[0] * 56 * 56 * (expand + rest)
    # (in, out, expansion, side of the block input, residual blocks after, their expansion)
    for cin, cout, e, side, n, e_res in [
        (c, c, 128, 56, blocks[1], 128),
        (c, c2, 256, 28, blocks[2], 256),
        (c2, c2, 512, 14, blocks[3], 256),
    ]:
        p, expand, rest = _bottleneck(cin, cout, e)
        out = side // 2
        params += p
        macs += side * side * expand + out * out * rest
        p, expand, rest = _bottleneck(cout, cout, e_res)
        params += n * p
        macs += n * out * out * (expand + rest)
    params += c2 * 512 + 3 * 512  # conv_sep
    macs += 49 * c2 * 512
    params += 49 * 512 + 2 * 512 + 512 * d + 2 * d  # GDC depthwise + BN, Linear, BN1d
    macs += 49 * 512 + 512 * d
    return params, macs


def test_exact_parameter_and_mac_counts() -> None:
    with torch.device("meta"):
        net = build_backbone("mobilefacenet")
    assert count_parameters(net) == MBF_PARAMS
    assert count_parameters(net, trainable_only=True) == MBF_PARAMS
    assert closed_form(MBF["blocks"], MBF["scale"]) == (MBF_PARAMS, MBF_MACS)
    assert count_macs(net) == MBF_MACS
    assert round(MBF_MACS / 1e9, 2) == 0.44


def test_mbf_large_parameter_and_mac_counts() -> None:
    with torch.device("meta"):
        net = build_backbone("mobilefacenet", **MBF_LARGE)
    assert count_parameters(net) == MBF_LARGE_PARAMS
    assert count_macs(net) == MBF_LARGE_MACS
    assert closed_form(MBF_LARGE["blocks"], MBF_LARGE["scale"]) == (
        MBF_LARGE_PARAMS,
        MBF_LARGE_MACS,
    )
