"""Model size and cost: parameter counts and multiply-accumulates (MACs) of one image."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one 3-channel image.

    Normalisation, activations and additions are left out (they are well under 1% for
    these networks), matching how the published GMAC figures are counted. ``input_size``
    defaults to the model's ``input_size`` attribute. Runs one forward pass on zeros in
    eval mode without gradients and restores the training flag afterwards.
    """
    size = input_size if input_size is not None else getattr(model, "input_size", None)
    if size is None:
        raise ValueError("count_macs needs input_size: the model has no input_size attribute")
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * kernel

    def linear_hook(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size[0], size[1], device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
