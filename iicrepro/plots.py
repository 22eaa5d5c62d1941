"""Figures shared by notebooks and book pages."""
from __future__ import annotations

import numpy as np
import torch

from .config import DATASETS
from .figures import as_rgb, colourise


def _unit_float(image) -> np.ndarray:
    """(C, H, W) uint8 or float image -> float numpy in [0, 1] (what figures.as_rgb expects)."""
    x = torch.as_tensor(image).detach().cpu()
    return (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).numpy()


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
                picture = as_rgb(_unit_float(values[r]))
            else:
                picture = colourise(torch.as_tensor(values[r]).cpu().numpy(), spec.palette)
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
