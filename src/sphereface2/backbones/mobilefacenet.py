"""MobileFaceNet: InsightFace arcface_torch's ``mbf`` backbone (backbones/mobilefacenet.py).

Same architecture, initialisation and module/parameter names as arcface_torch, so a state
dict saved there (``mbf``, or ``mbf_large`` with ``blocks=(2, 8, 12, 4), scale=4``) loads
with ``strict=True`` and no key mapping at the default width and input size.

Every convolution is followed by BatchNorm2d (eps 1e-5) and, except in a block's last 1x1
projection and the GDC, by PReLU (one slope per channel). With ``c = 64 * scale``:

* ``layers.0``: 3x3 stride-2 conv 3 -> c;
* ``layers.1``: a 3x3 grouped conv c -> c with 64 groups if ``blocks[0] == 1``, else
  ``blocks[0]`` residual bottlenecks with expansion 128;
* ``layers.2``..``layers.7``: a stride-2 bottleneck c -> c (expansion 128), ``blocks[1]``
  residual ones (128); stride 2 c -> 2c (256), ``blocks[2]`` residual (256); stride 2
  2c -> 2c (512), ``blocks[3]`` residual (256). A bottleneck is 1x1 expand (+PReLU) ->
  3x3 depthwise (+PReLU) -> 1x1 project (no activation), plus the input if residual;
* ``conv_sep``: 1x1 conv 2c -> 512 with PReLU;
* ``features`` (the GDC head): a depthwise conv whose kernel covers the whole final map
  (7x7 at 112x112) with BN -> flatten -> Linear 512 -> d without bias -> BatchNorm1d.

The four stride-2 convs give a ceil(H / 16) x ceil(W / 16) final map, like the other
families. Init: every conv and the Linear Kaiming-normal (fan_out, ReLU gain), BatchNorm
weight 1 and bias 0, PReLU PyTorch's 0.25. arcface_torch's ``fp16`` flag is replaced by
the caller's ``torch.autocast``: the trunk follows it, while ``conv_sep`` and the head run
in float32 as there. Its ``norm_output`` option (default off) is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sphereface2.backbones.common import (
    check_embedding_dim,
    check_images,
    check_input_size,
    check_width,
    final_map_size,
    scaled,
)
from sphereface2.backbones.registry import BACKBONES

#: arcface_torch's ``mbf`` defaults; ``mbf_large`` is blocks (2, 8, 12, 4), scale 4.
DEFAULT_BLOCKS = (1, 4, 6, 2)
DEFAULT_SCALE = 2
#: Channel counts at width 1 that ``scale`` multiplies (the trunk) and that it does not
#: (the groups of ``layers.1``, the bottleneck expansions, ``conv_sep`` and the GDC).
TRUNK_CHANNELS = (64, 128)
FIRST_GROUPS = 64
EXPANSIONS = (128, 256, 512)
SEP_CHANNELS = 512


def _conv(
    in_channels: int,
    out_channels: int,
    kernel: int | tuple[int, int],
    stride: int,
    padding: int,
    groups: int,
) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm2d, as ``layers`` (arcface_torch's LinearBlock)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int] = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv(in_channels, out_channels, kernel, stride, padding, groups),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvBNPReLU(nn.Module):
    """Conv (no bias) -> BatchNorm2d -> PReLU, as ``layers`` (arcface_torch's ConvBlock)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv(in_channels, out_channels, kernel, stride, padding, groups),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Bottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise (carries the stride) -> 1x1 project, optional residual.

    arcface_torch calls it DepthWise and its expansion width ``groups``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, expansion: int, stride: int, residual: bool
    ) -> None:
        super().__init__()
        if residual and (stride != 1 or in_channels != out_channels):
            raise ValueError("a residual bottleneck keeps the shape: stride 1, in == out")
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBNPReLU(in_channels, expansion),
            ConvBNPReLU(expansion, expansion, 3, stride, 1, groups=expansion),
            ConvBN(expansion, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class ResidualStage(nn.Module):
    """``num_blocks`` residual bottlenecks at a fixed shape, as ``layers``."""

    def __init__(self, channels: int, num_blocks: int, expansion: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(Bottleneck(channels, channels, expansion, 1, True) for _ in range(num_blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDCHead(nn.Module):
    """Global depthwise conv over the final map -> flatten -> Linear (no bias) -> BN1d."""

    def __init__(self, channels: int, map_size: tuple[int, int], embedding_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBN(channels, channels, map_size, groups=channels),
            nn.Flatten(),
            nn.Linear(channels, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _check_blocks(blocks: Sequence[int]) -> tuple[int, int, int, int]:
    valid = (
        isinstance(blocks, Sequence)
        and not isinstance(blocks, str)
        and len(blocks) == 4
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in blocks)
    )
    if not valid:
        raise ValueError(f"blocks must be four non-negative ints, got {blocks!r}")
    return tuple(blocks)  # type: ignore[return-value]


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    return scale


class MobileFaceNet(nn.Module):
    """MobileFaceNet backbone: (B, 3, H, W) images -> (B, embedding_dim) embeddings.

    Args:
        embedding_dim: size of the output embedding (arcface_torch's ``num_features``).
        blocks: residual bottlenecks per stage; ``blocks[0] == 1`` means the single grouped
            conv of arcface_torch instead of one bottleneck.
        scale: arcface_torch's trunk multiplier: the trunk has 64 * scale and 128 * scale
            channels; expansions, ``conv_sep`` and the GDC do not change with it.
        width: our channel multiplier over every channel count (1.0 = arcface_torch); each
            count becomes max(1, round(c * width)), the trunk's as round(c * width) * scale
            so the groups of ``layers.1`` still divide it.
        input_size: (H, W) the model is built for (each >= 16); the GDC kernel covers the
            ceil(H / 16) x ceil(W / 16) final map.
    """

    def __init__(
        self,
        embedding_dim: int = 512,
        blocks: Sequence[int] = DEFAULT_BLOCKS,
        scale: int = DEFAULT_SCALE,
        width: float = 1.0,
        input_size: int | Sequence[int] = (112, 112),
    ) -> None:
        super().__init__()
        self.name = "mobilefacenet"
        self.embedding_dim = check_embedding_dim(embedding_dim)
        self.input_size = check_input_size(input_size)
        blocks = _check_blocks(blocks)
        scale = _check_scale(scale)
        width = check_width(width)
        low, high = (scaled(c, width) * scale for c in TRUNK_CHANNELS)
        groups = scaled(FIRST_GROUPS, width)
        e1, e2, e3 = (scaled(c, width) for c in EXPANSIONS)
        sep = scaled(SEP_CHANNELS, width)

        first = (
            ConvBNPReLU(low, low, 3, 1, 1, groups=groups)
            if blocks[0] == 1
            else ResidualStage(low, blocks[0], e1)
        )
        # Registration order is arcface_torch's state-dict order.
        self.layers = nn.Sequential(
            ConvBNPReLU(3, low, 3, 2, 1),
            first,
            Bottleneck(low, low, e1, 2, False),
            ResidualStage(low, blocks[1], e1),
            Bottleneck(low, high, e2, 2, False),
            ResidualStage(high, blocks[2], e2),
            Bottleneck(high, high, e3, 2, False),
            ResidualStage(high, blocks[3], e2),
        )
        self.conv_sep = ConvBNPReLU(high, sep)
        self.features = GDCHead(sep, final_map_size(self.input_size), self.embedding_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.input_size, self.name)
        x = self.layers(images)
        # conv_sep and the head run in float32 even under autocast, as arcface_torch's fp16.
        device = x.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            with torch.autocast(device_type=device, enabled=False):
                return self.features(self.conv_sep(x.float()))
        return self.features(self.conv_sep(x))


@BACKBONES.register("mobilefacenet")
def mobilefacenet(
    embedding_dim: int = 512,
    blocks: Sequence[int] = DEFAULT_BLOCKS,
    scale: int = DEFAULT_SCALE,
    width: float = 1.0,
    input_size: int | Sequence[int] = (112, 112),
) -> MobileFaceNet:
    """mobilefacenet: arcface_torch's ``mbf`` (``blocks=(2, 8, 12, 4), scale=4``: ``mbf_large``)."""
    return MobileFaceNet(embedding_dim, blocks, scale, width, input_size)
