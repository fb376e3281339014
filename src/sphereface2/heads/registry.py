"""The head registry: build any loss head by name, without importing its class."""

from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

from sphereface2.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


def build_head(name: str, num_classes: int, embedding_dim: int, **params: Any) -> nn.Module:
    """Build the head registered as ``name``, e.g. ``build_head("sphereface2", 8631, 512, m=0.4)``.

    Unknown names raise :class:`~sphereface2.registry.UnknownNameError` listing the valid
    ones; unknown parameters raise ValueError listing the ones the head accepts.
    """
    builder = HEADS.get(name)
    accepted = [
        p.name
        for p in inspect.signature(builder).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("num_classes", "embedding_dim")
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"head {name!r} got unknown parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted)}"
        )
    return HEADS.build(name, num_classes=num_classes, embedding_dim=embedding_dim, **params)
