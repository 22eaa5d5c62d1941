"""iicrepro.data_summary: class shares of counted pixels, coverage counts, run artefact paths."""
from __future__ import annotations

import pytest
import torch

from iicrepro import data_summary
from iicrepro.data.base import SegmentationSet


def make(labels: list[list[int]], split: str = "train") -> SegmentationSet:
    y = torch.tensor(labels, dtype=torch.uint8).reshape(len(labels), 1, -1)  # (N, 1, W)
    x = torch.zeros(len(labels), 3, *y.shape[1:], dtype=torch.uint8)
    return SegmentationSet(name="camvid3", split=split, images=x, labels=y, class_names=("sky", "plant", "ground"),
                           ids=tuple(f"im{i}" for i in range(len(labels))))


def test_shares_are_over_counted_pixels_and_ignored_share_over_all():
    data = make([[0, 0, 1, 255], [2, 2, 2, 255]])
    per_class, ignored = data_summary.shares(data_summary.class_counts(data), data.class_names)
    assert per_class == pytest.approx({"sky": 2 / 6, "plant": 1 / 6, "ground": 3 / 6})
    assert ignored == pytest.approx(2 / 8)


def test_coverage_counts_per_threshold():
    data = make([[0, 0, 0, 0], [0, 255, 255, 255], [0, 0, 0, 255]])
    assert data_summary.coverage_counts(data, (0.0, 0.5, 0.75, 1.0)) == {"0": 3, "0.5": 2, "0.75": 2, "1": 1}


def test_summarise_block_and_all_ignored_is_an_error():
    train = make([[0, 1, 2, 255]])
    summary = data_summary.summarise("camvid3", train, {"paper_eval": train, "heldout": train.select([])})
    assert summary["splits"] == {"train": 1, "paper_eval": 1, "heldout": 0}
    assert set(summary["per_split"]) == {"train", "paper_eval"}
    assert summary["image_size"].startswith("3x1x4")
    with pytest.raises(ValueError, match="no counted pixel"):
        data_summary.summarise("camvid3", make([[255, 255]]), {})


def test_artifact_path_next_to_the_run_file(tmp_path):
    metrics = tmp_path / ".camvid3-data-s0.metrics.json"
    assert data_summary.artifact_path(metrics, "grid.png") == tmp_path / "camvid3-data-s0-grid.png"
    assert data_summary.artifact_path(None, "grid.png") is None
