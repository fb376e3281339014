"""IResNet: InsightFace's "improved ResNet" for face recognition (arcface_torch backbones).

Same architecture, initialisation and module/parameter names as arcface_torch's
``backbones/iresnet.py``, so a state dict saved by arcface_torch for the same depth (and
the default width and input size) loads with ``strict=True`` and no key mapping:

* stem: ``conv1`` (3x3, stride 1, no bias) -> ``bn1`` -> ``prelu`` (one slope per channel);
* ``layer1``..``layer4`` (64, 128, 256, 512 channels), each a Sequential of
  :class:`IBasicBlock`: ``bn1`` -> ``conv1`` (3x3) -> ``bn2`` -> ``prelu`` -> ``conv2`` (3x3,
  carries the stage's stride 2) -> ``bn3``, plus the shortcut; the first block of each
  stage has ``downsample`` = Sequential(1x1 conv stride 2 without bias, BatchNorm2d).
  No activation after the residual sum;
* head: ``bn2`` (BatchNorm2d) -> flatten -> ``dropout`` -> ``fc`` (Linear 512*7*7 -> d)
  -> ``features`` (BatchNorm1d whose weight is fixed at 1.0 and not trained).

Every BatchNorm uses eps 1e-5 and PyTorch's default momentum 0.1. Init: every conv
N(0, 0.1), BatchNorm2d weight 1 and bias 0, the Linear PyTorch's default.
arcface_torch's ``fp16`` flag (autocast over the trunk, fc and features in float32) is
replaced by the caller's ``torch.autocast``: the trunk follows it, and the head always
runs in float32 as in arcface_torch. Its ``zero_init_residual`` option (default off) and
gradient checkpointing are not offered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sphereface2.backbones.common import (
    check_dropout,
    check_embedding_dim,
    check_images,
    check_input_size,
    check_width,
    final_map_size,
    scaled,
)
from sphereface2.backbones.registry import BACKBONES

#: Channels of the stem and the four stages at width 1.
STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)

#: IBasicBlocks per stage for each depth.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}

BN_EPS = 1e-5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the (projected) input."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        # Registration order matters: it is the state-dict order of arcface_torch.
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv1(self.bn1(x)))
        out = self.bn3(self.conv2(self.prelu(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet backbone: (B, 3, H, W) images -> (B, embedding_dim) embeddings.

    Args:
        layers: IBasicBlocks in each of the four stages.
        embedding_dim: size of the output embedding (arcface_torch's ``num_features``).
        dropout: dropout probability on the flattened features before ``fc``.
        width: channel multiplier; each stage has max(1, round(c * width)) channels.
        input_size: (H, W) the model is built for (each >= 16); the final map is
            ceil(H / 16) x ceil(W / 16).
    """

    def __init__(
        self,
        layers: Sequence[int],
        embedding_dim: int = 512,
        dropout: float = 0.0,
        width: float = 1.0,
        input_size: int | Sequence[int] = (112, 112),
        name: str = "iresnet",
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"layers must be four positive ints, got {layers!r}")
        self.name = name
        self.embedding_dim = check_embedding_dim(embedding_dim)
        self.input_size = check_input_size(input_size)
        width = check_width(width)
        stem = scaled(STEM_CHANNELS, width)
        channels = [scaled(c, width) for c in STAGE_CHANNELS]

        self.conv1 = _conv3x3(3, stem)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        in_channels = stem
        for index, (out_channels, num_blocks) in enumerate(zip(channels, layers), start=1):
            blocks = [IBasicBlock(in_channels, out_channels, stride=2)]
            blocks += [IBasicBlock(out_channels, out_channels) for _ in range(num_blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_channels = out_channels

        map_h, map_w = final_map_size(self.input_size)
        self.bn2 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(p=check_dropout(dropout))
        self.fc = nn.Linear(in_channels * map_h * map_w, self.embedding_dim)
        self.features = nn.BatchNorm1d(self.embedding_dim, eps=BN_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # arcface_torch fixes the embedding BN's scale at 1: only its shift is learned.
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.input_size, self.name)
        x = self.prelu(self.bn1(self.conv1(images)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        # The head runs in float32 even under autocast, as arcface_torch's fp16 mode does.
        device = x.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            with torch.autocast(device_type=device, enabled=False):
                return self.features(self.fc(x.float()))
        return self.features(self.fc(x))


def _register(name: str, layers: tuple[int, int, int, int]) -> None:
    def build(
        embedding_dim: int = 512,
        dropout: float = 0.0,
        width: float = 1.0,
        input_size: int | Sequence[int] = (112, 112),
    ) -> IResNet:
        return IResNet(layers, embedding_dim, dropout, width, input_size, name=name)

    build.__name__ = name
    build.__doc__ = f"{name}: IResNet with {list(layers)} IBasicBlocks per stage."
    BACKBONES.register(name)(build)


for _name, _layers in IRESNET_LAYERS.items():
    _register(_name, _layers)
