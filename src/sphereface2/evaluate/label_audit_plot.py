"""A contact sheet: a grid of images with a caption under each, written as PNG.

Drawn on a matplotlib ``Figure`` with its own Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def tensor_to_rgb(image: torch.Tensor) -> np.ndarray:
    """Undo the training normalisation: (3, H, W) floats in [-1, 1] -> (H, W, 3) uint8."""
    rgb = (image.detach().float().cpu() * 127.5 + 127.5).clamp(0, 255).round()
    return rgb.to(torch.uint8).permute(1, 2, 0).numpy()


def plot_contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | Path,
    columns: int = 8,
    title: str = "",
) -> Path:
    """Write ``images`` ((H, W, 3) uint8 each) in a grid, row by row, captioned.

    Captions may hold several lines. An empty list gives a sheet that says so.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    count = len(images)
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    cell_w, cell_h = 1.7, 1.5 + 0.16 * lines
    fig = Figure(figsize=(cols * cell_w, rows * cell_h + (0.4 if title else 0.0)), dpi=100)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=9)
    if count == 0:
        fig.text(0.5, 0.5, "no samples to show", ha="center", va="center")
    for i, (image, caption) in enumerate(zip(images, captions)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(caption, fontsize=6.5, linespacing=1.1)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
