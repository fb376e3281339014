"""The one rule for choosing a device: ``auto`` picks CUDA when PyTorch sees a GPU, and
asking for CUDA without one is an error, not a silent fallback to the CPU."""

from __future__ import annotations

import torch


def resolve_device(requested: str | torch.device | None, configured: str = "auto") -> torch.device:
    """``requested`` if given, else ``configured``; ``auto`` -> ``cuda`` or ``cpu``.

    Raises:
        RuntimeError: CUDA was asked for but is not available.
        ValueError: a device type other than cpu or cuda.
    """
    choice = str(requested) if requested is not None else configured
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {choice!r}; use cpu, cuda or auto")
    return device
