"""Check the values of ``model.options`` and ``head.params`` when a config is loaded.

The builders own the rules (``lam`` in (0, 1), ``width > 0``, ...). Instead of repeating
them, :func:`check_option_values` calls the builders at load time, where an error can
still name the file and the key (``configs/x.yaml: head.params.lam: must be < 1, got 1.5``)
rather than surfacing from the trainer minutes later. Nothing big is allocated: the
backbone is built on the ``meta`` device (shapes only) with its random initialisation
skipped, and the head with two classes on the CPU (the global random state is restored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# In-place random initialisers. On meta tensors they have no effect, but their first call
# imports torch._dynamo (about a second), so they are skipped outright.
_RANDOM_INITS = frozenset(
    {
        "normal_",
        "uniform_",
        "trunc_normal_",
        "kaiming_normal_",
        "kaiming_uniform_",
        "xavier_normal_",
        "xavier_uniform_",
        "orthogonal_",
        "sparse_",
        "random_",
        "bernoulli_",
        "exponential_",
    }
)

# "<head>: <name> must be ..." (heads) or "<name> must be ..." (backbones).
_NAMED = re.compile(r"^(?:[\w.-]+: )?(\w+)\b[ :]*(.*)$", re.S)


class _ShapesOnly(TorchFunctionMode):
    """Skips the random initialisers (see ``_RANDOM_INITS``); everything else runs."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _RANDOM_INITS:
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)


def _key_of(message: str, keys: Mapping[str, str], fallback: str) -> tuple[str, str]:
    """``(dotted key, message without the option name)`` for a builder's error message."""
    found = _NAMED.match(message)
    if found and found.group(1) in keys:
        return keys[found.group(1)], found.group(2) or message
    return fallback, message


def _check(
    build: Callable[[], Any], keys: Mapping[str, str], fallback: str
) -> tuple[str, str] | None:
    """Run ``build``; on a ValueError/TypeError return ``(dotted key, message)``."""
    try:
        build()
    except (ValueError, TypeError) as err:
        return _key_of(" ".join(str(err).split()), keys, fallback)
    return None


def check_option_values(
    backbone: str,
    embedding_dim: int,
    input_size: tuple[int, int],
    options: Mapping[str, Any],
    head: str,
    params: Mapping[str, Any],
) -> tuple[str, str] | None:
    """Build the backbone (meta device) and the head (two classes) the way the trainer does.

    Returns ``(dotted key, what is wrong)`` for the first bad value, e.g.
    ``("head.params.lam", "must be < 1, got 1.5")``, or None when both build. The names
    must already be checked (:func:`sphereface2.config.check_names`).
    """
    from sphereface2.backbones import build_backbone
    from sphereface2.heads import build_head

    model_keys = {"embedding_dim": "model.embedding_dim", "input_size": "model.input_size"}
    with torch.device("meta"), _ShapesOnly():
        problem = _check(
            lambda: build_backbone(
                backbone, embedding_dim=embedding_dim, input_size=input_size, **options
            ),
            {**model_keys, **{k: f"model.options.{k}" for k in options}},
            "model.options",
        )
    if problem is not None:
        return problem
    # A real (2, d) head on the CPU: its proxy re-projection on meta would import dynamo.
    # fork_rng: loading a config must not move the global random stream.
    with torch.random.fork_rng(devices=[]):
        return _check(
            lambda: build_head(head, num_classes=2, embedding_dim=embedding_dim, **params),
            {**model_keys, **{k: f"head.params.{k}" for k in params}},
            "head.params",
        )
