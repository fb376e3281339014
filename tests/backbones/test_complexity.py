"""Parameter and MAC counts of the full-size 512-d models at 112x112.

Each count is checked two ways: against the table (the published-style figures that the
README quotes) and against a closed-form count from the architecture description.
Models are built on the meta device, so full sizes cost no memory.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sphereface2.backbones import build_backbone, count_macs, count_parameters

# name -> total parameters (IResNet-50: the published 43.6M)
IRESNET_PARAMS = {
    "iresnet18": 24_025_600,
    "iresnet34": 34_139_328,
    "iresnet50": 43_590_848,
    "iresnet100": 65_156_160,
    "iresnet200": 118_833_920,
}
# name -> (paper version without BN, BN variant)
SFNET_PARAMS = {
    "sfnet4": (14_396_544, 14_398_528),
    "sfnet10": (17_052_032, 17_055_296),
    "sfnet20": (24_500_992, 24_506_688),
    "sfnet36": (34_605_440, 34_614_848),
    "sfnet64": (50_020_864, 50_036_544),
}
IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
SFNET_BLOCKS = {
    "sfnet4": (0, 0, 0, 0),
    "sfnet10": (0, 1, 2, 0),
    "sfnet20": (1, 2, 4, 1),
    "sfnet36": (2, 4, 8, 2),
    "sfnet64": (3, 8, 16, 3),
}
CHANNELS = (64, 128, 256, 512)
HEAD = 512 * 7 * 7 * 512 + 512  # the embedding Linear


def _meta(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return build_backbone(name, **options)


def iresnet_closed_form(layers: tuple[int, ...]) -> int:
    total = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, bn, prelu
    inplanes = 64
    for blocks, c in zip(layers, CHANNELS):
        for block in range(blocks):
            total += 2 * inplanes + inplanes * c * 9 + 2 * c + c + c * c * 9 + 2 * c
            if block == 0:
                total += inplanes * c + 2 * c
            inplanes = c
    return total + 2 * 512 + HEAD + 2 * 512  # bn2, fc, features


def sfnet_closed_form(blocks: tuple[int, ...], batch_norm: bool) -> int:
    extra = 2 if batch_norm else 1  # BN weight + bias replaces the conv bias
    total, inplanes = 0, 3
    for n, c in zip(blocks, CHANNELS):
        total += inplanes * c * 9 + extra * c + n * 2 * (c * c * 9 + extra * c)
        inplanes = c
    return total + HEAD + (2 * 512 if batch_norm else 0)


@pytest.mark.parametrize("name", sorted(IRESNET_PARAMS))
def test_iresnet_parameter_counts(name: str) -> None:
    net = _meta(name)
    assert count_parameters(net) == IRESNET_PARAMS[name]
    assert IRESNET_PARAMS[name] == iresnet_closed_form(IRESNET_LAYERS[name])
    # the embedding BN's frozen scale is the only non-trainable parameter
    assert count_parameters(net, trainable_only=True) == IRESNET_PARAMS[name] - 512


@pytest.mark.parametrize("name", sorted(SFNET_PARAMS))
@pytest.mark.parametrize("batch_norm", [False, True])
def test_sfnet_parameter_counts(name: str, batch_norm: bool) -> None:
    expected = SFNET_PARAMS[name][batch_norm]
    assert count_parameters(_meta(name, batch_norm=batch_norm)) == expected
    assert expected == sfnet_closed_form(SFNET_BLOCKS[name], batch_norm)


def test_published_iresnet50_figures() -> None:
    net = _meta("iresnet50")
    assert round(count_parameters(net) / 1e6, 1) == 43.6
    macs = count_macs(net)
    assert macs == 6_309_330_944
    assert round(macs / 1e9, 1) == 6.3


def test_mac_counts_of_other_models() -> None:
    assert count_macs(_meta("iresnet100")) == 12_089_606_144  # published 12.1G
    assert count_macs(_meta("sfnet20")) == 2_041_360_384
    assert count_macs(_meta("sfnet64")) == 7_128_002_560


def test_count_macs_by_hand() -> None:
    """Conv 3->4 (3x3) at stride 2 on 8x8 -> 4x4 output; then Linear 64 -> 5."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(64, 5))
    assert count_macs(net, input_size=(8, 8)) == 4 * 4 * 4 * 3 * 9 + 64 * 5
    net.train()
    count_macs(net, input_size=(8, 8))
    assert net.training  # the flag is restored


def test_count_macs_needs_an_input_size() -> None:
    with pytest.raises(ValueError, match="input_size"):
        count_macs(nn.Linear(2, 2))
