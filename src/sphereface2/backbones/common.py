"""Option checks and small pieces shared by every backbone family.

Both families (SFNet, IResNet) halve the spatial size four times with stride-2 3x3 convs
(padding 1), each mapping a side n to ceil(n / 2); the last feature map is therefore
ceil(H / 16) x ceil(W / 16) (112 -> 7, 56 -> 4) and the embedding Linear's input size
follows from ``input_size``. The checks here turn a bad option into a ValueError that
names the option and the value instead of a shape mismatch deep inside a conv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Total down-sampling factor of the four stride-2 stages.
DOWNSAMPLE = 16
#: Smallest accepted side: below it the last stages would only see padding.
MIN_SIDE = 16


def check_embedding_dim(embedding_dim: int) -> int:
    """A positive int, or ValueError."""
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
    return embedding_dim


def check_width(width: float) -> float:
    """A finite, positive channel multiplier, or ValueError."""
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise ValueError(f"width must be a positive number, got {width!r}")
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    return float(width)


def check_dropout(dropout: float) -> float:
    """A probability in [0, 1), or ValueError."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def check_input_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) as two ints >= 16 (an int means a square), or ValueError."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        size: tuple[int, ...] = (input_size, input_size)
    elif isinstance(input_size, Sequence) and not isinstance(input_size, str):
        size = tuple(input_size)
    else:
        raise ValueError(f"input_size must be (H, W) or an int, got {input_size!r}")
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise ValueError(f"input_size must be two ints (H, W), got {input_size!r}")
    height, width = size
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(
            f"input_size {height}x{width} is too small: H and W must be at least {MIN_SIDE} "
            f"(four stride-2 stages; 112x112 gives a 7x7 final map)"
        )
    return height, width


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width``: max(1, round(channels * width))."""
    return max(1, round(channels * width))


def final_map_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of the last feature map, e.g. (112, 112) -> (7, 7), (56, 56) -> (4, 4)."""
    return -(-input_size[0] // DOWNSAMPLE), -(-input_size[1] // DOWNSAMPLE)


def check_images(images: torch.Tensor, input_size: tuple[int, int], model: str) -> None:
    """Raise ValueError unless ``images`` is a (B, 3, H, W) batch of the model's input size.

    The embedding Linear is sized for one input size, so any other size would fail (or,
    worse, silently work for a size with the same final-map area) further down.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{model} expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
    got = (int(images.shape[2]), int(images.shape[3]))
    if got != input_size:
        raise ValueError(
            f"{model} was built for input_size {input_size[0]}x{input_size[1]} but got images of "
            f"size {got[0]}x{got[1]}; resize the images or build the model with "
            f"input_size=({got[0]}, {got[1]})"
        )
