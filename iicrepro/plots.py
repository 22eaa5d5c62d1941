"""Figures shared by notebooks and book pages."""
from __future__ import annotations

import numpy as np
import torch

from .config import DATASETS

IGNORE = 255


def _colourise(labels: np.ndarray, palette) -> np.ndarray:
    """Label map (H, W) -> RGB uint8 (H, W, 3) in the class palette; ignored (255) pixels black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[np.asarray(labels, dtype=np.uint8)]


def _as_rgb(image) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W, 3) float for imshow (first three channels: RGB)."""
    x = torch.as_tensor(image).detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x[:3].permute(1, 2, 0).clamp(0, 1).numpy()


def label_grid(images, labels, *, dataset: str, predictions=None, max_rows: int = 8, titles=None,
               cell_size: float = 2.2):
    """A grid with one row per image: the image, its label map, and optionally predicted classes.

    images: (B, C, H, W) (uint8, or float in [0, 1]) or a list of (C, H, W); labels, predictions: (B, H, W)
    class ids with 255 = ignore (drawn black). Colours: iicrepro.config.DATASETS[dataset].palette.
    Returns the matplotlib Figure (with a legend of the class colours).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    spec = DATASETS[dataset]
    rows = min(len(images), max_rows)
    columns = [("image", images), ("labels", labels)]
    if predictions is not None:
        columns.append(("prediction", predictions))
    fig, axes = plt.subplots(rows, len(columns), figsize=(cell_size * len(columns), cell_size * rows), squeeze=False)
    for r in range(rows):
        for c, (kind, values) in enumerate(columns):
            ax = axes[r][c]
            if kind == "image":
                picture = _as_rgb(values[r])
            else:
                picture = _colourise(torch.as_tensor(values[r]).cpu().numpy(), spec.palette)
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(kind)
            if c == 0 and titles is not None:
                ax.set_ylabel(str(titles[r]), fontsize=8)
    handles = [Patch(color=np.array(col) / 255.0, label=name) for name, col in zip(spec.class_names, spec.palette)]
    handles.append(Patch(color="black", label="ignored"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
