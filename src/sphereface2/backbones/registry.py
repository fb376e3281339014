"""The backbone registry: build any backbone by name, so callers never import a class.

A backbone is an ``nn.Module`` mapping float images (B, 3, H, W) to embeddings
(B, embedding_dim), with attributes ``embedding_dim`` and ``input_size`` (H, W).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sphereface2.registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")


def backbone_options(name: str) -> list[str]:
    """The keyword options that backbone ``name`` accepts besides ``embedding_dim``."""
    return BACKBONES.options(name, exclude=("embedding_dim",))


def build_backbone(name: str, embedding_dim: int = 512, **options: Any) -> nn.Module:
    """Build the registered backbone ``name`` (e.g. ``"sfnet20"``, ``"iresnet50"``).

    ``options`` are the family's keyword options (``width``, ``input_size``; ``batch_norm``
    for SFNet, ``dropout`` for SFNet and IResNet, ``blocks`` and ``scale`` for
    ``"mobilefacenet"``); an unknown name raises ``UnknownNameError`` listing the valid
    names, an unknown option an ``UnknownOptionError`` (a TypeError and a ValueError)
    listing the valid options, and a bad value a ``ValueError`` naming the option.
    """
    BACKBONES.check_options(name, options, exclude=("embedding_dim",))
    return BACKBONES.build(name, embedding_dim=embedding_dim, **options)
