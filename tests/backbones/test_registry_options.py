"""Building by name and the errors for unknown names, unknown options and bad values."""

from __future__ import annotations

import math

import pytest
import torch

from sphereface2.backbones import BACKBONES, backbone_options, build_backbone
from sphereface2.registry import UnknownNameError

EXPECTED_NAMES = [
    "iresnet100",
    "iresnet18",
    "iresnet200",
    "iresnet34",
    "iresnet50",
    "mobilefacenet",
    "sfnet10",
    "sfnet20",
    "sfnet36",
    "sfnet4",
    "sfnet64",
]


def test_registered_names() -> None:
    assert BACKBONES.names() == EXPECTED_NAMES


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_backbone("resnet50")
    message = str(info.value)
    assert "resnet50" in message
    for name in EXPECTED_NAMES:
        assert name in message


def test_options_per_family() -> None:
    assert backbone_options("sfnet20") == ["batch_norm", "width", "input_size", "dropout"]
    assert backbone_options("iresnet50") == ["dropout", "width", "input_size"]
    assert backbone_options("mobilefacenet") == ["blocks", "scale", "width", "input_size"]


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(TypeError, match=r"'iresnet18'.*batch_norm.*valid options:.*dropout"):
        build_backbone("iresnet18", batch_norm=True)


@pytest.mark.parametrize("width", [0, -0.5, math.nan, math.inf, "1", True, None])
def test_bad_width(width: object) -> None:
    with pytest.raises(ValueError, match="width"):
        build_backbone("sfnet4", width=width)


@pytest.mark.parametrize(
    "input_size",
    [
        (15, 112),
        (112, 8),
        (0, 0),
        (-112, 112),
        (112,),
        (112, 112, 3),
        "112",
        112.0,
        (112.0, 112),
        (True, 112),
        None,
    ],
)
def test_bad_input_size(input_size: object) -> None:
    with pytest.raises(ValueError, match="input_size"):
        build_backbone("iresnet18", width=0.05, input_size=input_size)


def test_input_size_message_names_the_minimum() -> None:
    with pytest.raises(ValueError, match=r"input_size 8x112 is too small.*at least 16"):
        build_backbone("sfnet4", input_size=(8, 112))


@pytest.mark.parametrize("name", ["sfnet4", "iresnet18"])
@pytest.mark.parametrize(
    ("input_size", "final_map"), [((112, 112), (7, 7)), ((56, 56), (4, 4)), ((100, 17), (7, 2))]
)
def test_final_map_follows_the_conv_arithmetic(
    name: str, input_size: tuple[int, int], final_map: tuple[int, int]
) -> None:
    """Each stride-2 3x3 conv maps n to ceil(n / 2); the Linear is sized for the real map."""
    net = build_backbone(name, embedding_dim=4, width=1 / 64, input_size=input_size).eval()
    assert net.fc.in_features == 8 * final_map[0] * final_map[1]
    with torch.no_grad():
        assert net(torch.zeros(1, 3, *input_size)).shape == (1, 4)


@pytest.mark.parametrize("embedding_dim", [0, -1, 1.5, True, "512"])
def test_bad_embedding_dim(embedding_dim: object) -> None:
    with pytest.raises(ValueError, match="embedding_dim"):
        build_backbone("sfnet4", embedding_dim=embedding_dim, width=0.05)


@pytest.mark.parametrize("name", ["sfnet4", "iresnet18"])
@pytest.mark.parametrize("dropout", [-0.1, 1.0, "0.1"])
def test_bad_dropout(name: str, dropout: object) -> None:
    with pytest.raises(ValueError, match="dropout"):
        build_backbone(name, width=0.05, dropout=dropout)


def test_bad_batch_norm() -> None:
    with pytest.raises(ValueError, match="batch_norm"):
        build_backbone("sfnet4", width=0.05, batch_norm="yes")


def test_int_input_size_means_square() -> None:
    net = build_backbone("sfnet4", width=0.05, input_size=32)
    assert net.input_size == (32, 32)


@pytest.mark.parametrize("name", ["sfnet20", "iresnet18"])
def test_forward_rejects_other_image_size(name: str) -> None:
    net = build_backbone(name, embedding_dim=4, width=0.1, input_size=(32, 32)).eval()
    with pytest.raises(
        ValueError, match=r"built for input_size 32x32 but got images of size 48x32"
    ):
        net(torch.zeros(1, 3, 48, 32))


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 32, 32), (1, 4, 32, 32)])
def test_forward_rejects_wrong_layout(shape: tuple[int, ...]) -> None:
    net = build_backbone("sfnet4", embedding_dim=4, width=0.1, input_size=(32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(shape))
