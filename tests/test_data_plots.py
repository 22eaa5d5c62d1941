"""plots.label_grid: images with label maps in the class palette, ignored pixels black."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from iicrepro.config import DATASETS  # noqa: E402
from iicrepro.figures import colourise as _colourise
from iicrepro.plots import label_grid  # noqa: E402


def test_colourise_uses_the_palette_and_black_for_ignore():
    palette = DATASETS["camvid3"].palette
    rgb = _colourise(np.array([[0, 1], [2, 255]], dtype=np.uint8), palette)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == palette[0] and tuple(rgb[1, 0]) == palette[2] and tuple(rgb[1, 1]) == (0, 0, 0)


def test_label_grid_draws_rows_and_columns():
    images = torch.rand(3, 4, 16, 16)  # RGB+IR: only RGB is shown
    labels = torch.randint(0, 3, (3, 16, 16))
    labels[:, :4] = 255
    fig = label_grid(images, labels, dataset="potsdam3", predictions=labels, titles=["a", "b", "c"])
    assert len(fig.axes) == 9
    fig2 = label_grid([torch.zeros(3, 8, 10, dtype=torch.uint8)], [torch.zeros(8, 10, dtype=torch.uint8)],
                      dataset="cocostuff15")
    assert len(fig2.axes) == 2
    matplotlib.pyplot.close("all")
