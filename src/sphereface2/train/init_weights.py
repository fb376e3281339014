"""Start a fresh run from pretrained backbone weights: ``model.init: PATH``.

    model:
      backbone: iresnet50
      init: /models/ms1mv3_arcface_r50/backbone.pth   # arcface_torch's file
      init_strict: true                                # the default

``PATH`` may be:

- a plain state dict saved with ``torch.save`` (arcface_torch's ``backbone.pth``: our
  iresnet and mobilefacenet use arcface_torch's names), or arcface_torch's training
  checkpoint ``checkpoint_gpu_N.pt`` (its ``state_dict_backbone``);
- a sphereface2 training checkpoint ``ckpt_*.pt`` or evaluation file ``model.pt``: its
  backbone (the head, optimiser and data position are not used);
- a run folder: its ``model.pt``, else its newest checkpoint;
- a safetensors export: ``model.safetensors`` or the folder holding it.

Files are opened with ``torch.load(weights_only=True)`` or safetensors, so no code stored
in a file runs. A ``module.`` prefix on every key (a model saved inside DataParallel or
DDP) is dropped.

Strict (``model.init_strict: true``, the default): every backbone tensor must be in the
file with the same shape, and the file must hold nothing else; the error lists the missing
and unexpected keys and the shape mismatches. ``model.init_strict: false`` loads the
tensors whose name and shape match and keeps the others as freshly initialised (a
different ``embedding_dim`` changes ``fc`` and ``features``, say); the log names every
skipped key. A file of which no tensor fits is refused either way.

The head always starts fresh: the new training set has its own identities. Only a fresh
start reads ``model.init``; a resumed run takes every weight from its checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sphereface2.models.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    check_format,
    latest_checkpoint,
)
from sphereface2.models.load_errors import describe_load_error

#: The config key, named in every message.
KEY = "model.init"
SAFETENSORS_FILE = "model.safetensors"
#: arcface_torch's training checkpoint keeps the backbone under this key.
ARCFACE_CHECKPOINT_KEY = "state_dict_backbone"
_ACCEPTED = (
    "a state dict (.pth, e.g. arcface_torch's backbone.pth), a sphereface2 checkpoint or "
    "model.pt, a run folder, or a safetensors export"
)


@dataclass
class InitWeights:
    """Backbone weights read from ``path``; ``kind`` says what the file was."""

    path: Path
    kind: str
    state: dict[str, torch.Tensor]


@dataclass
class InitResult:
    """What :func:`init_backbone` loaded and skipped (skipped only when not strict)."""

    path: Path
    kind: str
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def log_lines(self) -> list[str]:
        """The lines for the run's log: the file, the count, and every skipped key."""
        lines = [
            f"{KEY}: loaded {self.loaded} of the backbone's {self.total} tensors from "
            f"{self.path} ({self.kind}); the head starts fresh"
        ]
        skipped = (
            ("kept fresh, not in the file", self.missing),
            ("kept fresh, another shape in the file", self.mismatched),
            ("ignored, not in the backbone", self.unexpected),
        )
        for what, keys in skipped:
            if keys:
                lines.append(f"{KEY}: skipped {len(keys)} ({what}): {', '.join(keys)}")
        return lines


def _resolve(path: Path) -> Path:
    """The weights file that ``path`` names (a run or export folder holds one)."""
    if not path.exists():
        raise FileNotFoundError(f"{KEY}: {path}: not found (expected {_ACCEPTED})")
    if not path.is_dir():
        return path
    found = latest_checkpoint(path)
    for candidate in (path / "model.pt", found, path / SAFETENSORS_FILE):
        if candidate is not None and candidate.is_file():
            return candidate
    raise ValueError(
        f"{KEY}: {path}: the folder holds no model.pt, checkpoints/ckpt_*.pt or {SAFETENSORS_FILE}"
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{KEY}: {path}: not a readable safetensors file ({err})") from None


def _is_state_dict(data: Any) -> bool:
    return (
        isinstance(data, Mapping)
        and bool(data)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())
    )


def _from_torch_file(path: Path) -> tuple[str, Mapping[str, Any]]:
    """(what the file is, its backbone state dict)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types; all mean "not loadable"
        reason = describe_load_error(err)  # never torch's advice to drop weights_only
        raise ValueError(f"{KEY}: {path}: not a readable weights file ({reason})") from None
    if isinstance(data, Mapping) and "format" in data:
        found = check_format(data, path, (CHECKPOINT_FORMAT, MODEL_FORMAT))
        state = data.get("backbone")
        if not _is_state_dict(state):
            raise ValueError(f"{KEY}: {path}: {found} file without backbone weights")
        iteration = data.get("iteration")
        return f"{found} file, iteration {iteration}", state
    if isinstance(data, Mapping) and _is_state_dict(data.get(ARCFACE_CHECKPOINT_KEY)):
        return f"arcface_torch checkpoint, its {ARCFACE_CHECKPOINT_KEY}", data[
            ARCFACE_CHECKPOINT_KEY
        ]
    if _is_state_dict(data):
        return "a state dict", data
    keys = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
    raise ValueError(
        f"{KEY}: {path}: holds neither a state dict (name -> tensor) nor a checkpoint with "
        f"backbone weights (found {keys})"
    )


def _strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` that DataParallel/DDP put before every key, when all have it."""
    prefix = "module."
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def read_init_weights(path: str | os.PathLike) -> InitWeights:
    """The backbone state dict at ``path`` (see the module docstring for what is accepted).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a file that holds no backbone weights; the message names the file and
            ``model.init``.
    """
    file = _resolve(Path(path))
    if file.suffix.lower() == ".safetensors":
        kind, state = "safetensors export", _read_safetensors(file)
    else:
        kind, state = _from_torch_file(file)
    return InitWeights(file, kind, _strip_wrapper_prefix(state))


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def init_backbone(backbone: nn.Module, path: str | os.PathLike, strict: bool = True) -> InitResult:
    """Load the weights at ``path`` into ``backbone`` (strict or not, see the module
    docstring). Nothing is loaded when the check fails.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: an unreadable file, or weights that do not fit (strict: any missing,
            unexpected or other-shaped key; not strict: none fits). The message names the
            file and ``model.init``, and lists the keys.
    """
    weights = read_init_weights(path)
    own = backbone.state_dict()
    given = weights.state
    missing = [key for key in own if key not in given]
    unexpected = [key for key in given if key not in own]
    mismatched = [
        f"{key} {_shape(given[key])} (backbone {_shape(own[key])})"
        for key in own
        if key in given and given[key].shape != own[key].shape
    ]
    fits = {
        key: value for key, value in given.items() if key in own and value.shape == own[key].shape
    }
    where = f"{KEY}: {weights.path} ({weights.kind})"
    if strict and (missing or unexpected or mismatched):
        problems = [
            f"{len(keys)} {what}: {_listed(keys)}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("with another shape in the file", mismatched),
            )
            if keys
        ]
        raise ValueError(
            f"{where}: its weights do not fit the configured backbone: {'; '.join(problems)}. "
            "Set model.init_strict=false to load the tensors that fit and keep the others "
            "freshly initialised"
        )
    if not fits:
        raise ValueError(
            f"{where}: none of its {len(given)} tensors fits the configured backbone "
            f"(for example {_listed(unexpected or mismatched, 3)}); is it the same model family?"
        )
    backbone.load_state_dict(fits, strict=False)
    return InitResult(
        weights.path, weights.kind, len(fits), len(own), missing, unexpected, mismatched
    )


def _listed(keys: list[str], limit: int = 10) -> str:
    """The first ``limit`` keys, then how many more."""
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
