"""The head registry: build any loss head by name, without importing its class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn as nn

from sphereface2.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


def build_head(name: str, num_classes: int, embedding_dim: int, **params: Any) -> nn.Module:
    """Build the head registered as ``name``, e.g. ``build_head("sphereface2", 8631, 512, m=0.4)``.

    Unknown names raise :class:`~sphereface2.registry.UnknownNameError` listing the valid
    ones; unknown parameters raise :class:`~sphereface2.registry.UnknownOptionError` (a
    ValueError and a TypeError) listing the ones the head accepts.
    """
    check_head_options(name, params)
    return HEADS.build(name, num_classes=num_classes, embedding_dim=embedding_dim, **params)


def check_head_options(name: str, params: Iterable[str]) -> None:
    """:func:`build_head`'s check of the keywords of head ``name`` (the sizes excluded)."""
    HEADS.check_options(
        name, params, ("num_classes", "embedding_dim"), what="parameter", listing="it accepts"
    )
