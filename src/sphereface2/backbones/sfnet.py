"""SFNet: the SphereFace family of plain residual CNNs used for the SphereFace2 paper.

Four stages; each is one stride-2 3x3 conv followed by N residual blocks of two 3x3
convs, with 64, 128, 256, 512 channels. A 112x112 input ends as a 512x7x7 map that is
flattened into one Linear (512*7*7 -> embedding_dim).

Two variants, chosen by ``batch_norm`` (both as in the official OpenSphere code):

* ``batch_norm=False`` (the paper's networks, OpenSphere ``sfnet*_deprecated``): convs
  with bias, ReLU after every conv, the residual sum is *not* followed by an activation
  (block: x + relu(conv2(relu(conv1(x))))), nothing after the embedding Linear. Init:
  stage convs Xavier-normal, block convs N(0, 0.01), conv biases zero (as in the
  original SphereFace Caffe models; OpenSphere's PyTorch port left PyTorch's default
  bias init), the Linear keeps PyTorch's default init.
* ``batch_norm=True`` (OpenSphere ``sfnet*``, "SFNet with BN"): convs without bias,
  each followed by BatchNorm2d; stage conv -> BN -> ReLU; block conv -> BN -> ReLU ->
  conv -> BN, then the sum, then ReLU (the torchvision ResNet arrangement); dropout ->
  Linear -> BatchNorm1d on the embedding (affine, weight initialised to 1). Init:
  Kaiming-normal (fan_out, ReLU) for convs, BN weight 1 and bias 0.

State-dict names follow OpenSphere's paper version (``layerK.0.conv``,
``layerK.J.conv1``/``conv2``, ``fc``), so its paper checkpoints load directly. OpenSphere's
BN version names the stage conv ``layerK.0.conv1``/``bn1``; map those to
``layerK.0.conv``/``bn`` to load one.
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

#: Channels of the four stages at width 1.
STAGE_CHANNELS = (64, 128, 256, 512)

#: Residual blocks per stage for each depth (depth = 4 stage convs + 2 per block).
SFNET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "sfnet4": (0, 0, 0, 0),
    "sfnet10": (0, 1, 2, 0),
    "sfnet20": (1, 2, 4, 1),
    "sfnet36": (2, 4, 8, 2),
    "sfnet64": (3, 8, 16, 3),
}


def _conv3x3(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class StageConv(nn.Module):
    """The stride-2 3x3 conv that opens a stage: conv -> (BN) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv = _conv3x3(in_channels, out_channels, stride=2, bias=not batch_norm)
        self.bn = _norm(out_channels, batch_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SFBlock(nn.Module):
    """Residual block of two 3x3 convs; where the ReLUs sit depends on ``batch_norm``.

    Paper (no BN): x + relu(conv2(relu(conv1(x)))).
    With BN: relu(x + bn2(conv2(relu(bn1(conv1(x)))))).
    """

    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.conv1 = _conv3x3(channels, channels, stride=1, bias=not batch_norm)
        self.bn1 = _norm(channels, batch_norm)
        self.conv2 = _conv3x3(channels, channels, stride=1, bias=not batch_norm)
        self.bn2 = _norm(channels, batch_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.batch_norm:
            return self.relu(out + x)
        return self.relu(out) + x


class SFNet(nn.Module):
    """SFNet backbone: (B, 3, H, W) images -> (B, embedding_dim) embeddings.

    Args:
        blocks: residual blocks in each of the four stages.
        embedding_dim: size of the output embedding.
        batch_norm: False for the paper's network, True for the BN variant (see module doc).
        width: channel multiplier; each stage has max(1, round(c * width)) channels.
        input_size: (H, W) the model is built for (each >= 16); the final map is
            ceil(H / 16) x ceil(W / 16).
        dropout: dropout probability on the flattened features before the Linear.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        embedding_dim: int = 512,
        batch_norm: bool = False,
        width: float = 1.0,
        input_size: int | Sequence[int] = (112, 112),
        dropout: float = 0.0,
        name: str = "sfnet",
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or any(not isinstance(n, int) or n < 0 for n in blocks):
            raise ValueError(f"blocks must be four non-negative ints, got {blocks!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {batch_norm!r}")
        self.name = name
        self.embedding_dim = check_embedding_dim(embedding_dim)
        self.input_size = check_input_size(input_size)
        self.batch_norm = batch_norm
        width = check_width(width)
        channels = [scaled(c, width) for c in STAGE_CHANNELS]

        in_channels = 3
        for index, (out_channels, num_blocks) in enumerate(zip(channels, blocks), start=1):
            stage = [StageConv(in_channels, out_channels, batch_norm)]
            stage += [SFBlock(out_channels, batch_norm) for _ in range(num_blocks)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            in_channels = out_channels

        map_h, map_w = final_map_size(self.input_size)
        self.dropout = nn.Dropout(p=check_dropout(dropout))
        self.fc = nn.Linear(channels[-1] * map_h * map_w, self.embedding_dim)
        self.features = nn.BatchNorm1d(self.embedding_dim) if batch_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if self.batch_norm:
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            # The paper init differs between the stage convs and the block convs.
            elif isinstance(module, StageConv) and not self.batch_norm:
                nn.init.xavier_normal_(module.conv.weight)
            elif isinstance(module, SFBlock) and not self.batch_norm:
                nn.init.normal_(module.conv1.weight, mean=0.0, std=0.01)
                nn.init.normal_(module.conv2.weight, mean=0.0, std=0.01)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.input_size, self.name)
        x = self.layer1(images)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.dropout(torch.flatten(x, 1))
        return self.features(self.fc(x))


def _register(name: str, blocks: tuple[int, int, int, int]) -> None:
    def build(
        embedding_dim: int = 512,
        batch_norm: bool = False,
        width: float = 1.0,
        input_size: int | Sequence[int] = (112, 112),
        dropout: float = 0.0,
    ) -> SFNet:
        return SFNet(blocks, embedding_dim, batch_norm, width, input_size, dropout, name=name)

    build.__name__ = name
    build.__doc__ = f"{name}: SFNet with {list(blocks)} residual blocks per stage."
    BACKBONES.register(name)(build)


for _name, _blocks in SFNET_BLOCKS.items():
    _register(_name, _blocks)
