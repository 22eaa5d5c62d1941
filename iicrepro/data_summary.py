"""What a dataset variant holds, for the book's Datasets page (notebooks/datasets.ipynb).

summarise() turns the splits a run loads (iicrepro.experiment.load_data: train, paper_eval, heldout) into a
JSON-ready block: images per split, the image size at working resolution, the share of each class among the
pixels that count (labels != 255; the paper's masks, facts section 3), the share of pixels that do not
count, and how many images keep at least a given share of counted pixels (the COCO-Stuff curation rule of
Ji et al. 2019, supplement: >= 75 % of pixels in the target classes, applied here as a report only).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

IGNORE = 255
COVERAGE_THRESHOLDS = (0.0, 0.5, 0.75, 0.9)


def class_counts(data) -> torch.Tensor:
    """Pixels per label value of a SegmentationSet: int64 (256,), index 255 = pixels that do not count."""
    counts = torch.zeros(256, dtype=torch.long)
    for labels in ([data.labels] if data.uniform else data.labels):
        counts += torch.bincount(labels.flatten().long().cpu(), minlength=256)
    return counts


def shares(counts: torch.Tensor, class_names) -> tuple[dict[str, float], float]:
    """({class: share of counted pixels}, share of all pixels that do not count) from class_counts."""
    counted = int(counts[: len(class_names)].sum())
    total = int(counts.sum())
    if counted == 0:
        raise ValueError("no counted pixel (every label is 255): nothing to summarise")
    per_class = {name: int(counts[i]) / counted for i, name in enumerate(class_names)}
    return per_class, int(counts[IGNORE]) / max(total, 1)


def coverage_counts(data, thresholds=COVERAGE_THRESHOLDS) -> dict[str, int]:
    """{threshold: images whose share of counted pixels is >= threshold} (keys as strings, for JSON)."""
    share = data.coverage()
    return {f"{t:g}": int((share >= t).sum()) for t in thresholds}


def summarise(dataset: str, train_set, eval_sets: dict, *, thresholds=COVERAGE_THRESHOLDS) -> dict:
    """The `dataset_summary` block of a datasets run (read by iicrepro.report.tables_runs.dataset_snippet).

    train_set, eval_sets: as returned by iicrepro.experiment.load_data. Class shares are over the training
    images (the images IIC is trained on); per-split shares are under "per_split".
    """
    splits = {"train": train_set, **eval_sets}
    per_split = {}
    for name, data in splits.items():
        if len(data) == 0:
            continue
        class_share, ignored = shares(class_counts(data), data.class_names)
        per_split[name] = {"pixel_share": class_share, "ignored_share": ignored,
                           "coverage_counts": coverage_counts(data, thresholds)}
    first = train_set.images[0]
    return {"dataset": dataset, "splits": {name: len(data) for name, data in splits.items()},
            "image_size": "x".join(str(int(n)) for n in first.shape[-3:]) + " (channels x height x width)",
            "pixel_share": per_split["train"]["pixel_share"], "ignored_share": per_split["train"]["ignored_share"],
            "per_split": per_split, "source": str(train_set.info.get("source", "dataset files"))}


def artifact_path(metrics_path, suffix: str) -> Path | None:
    """Where a run's extra file goes: next to its run file, named after the run (NAME-suffix).

    metrics_path is the file iicrepro.runner asks a notebook to write (<out>/.NAME.metrics.json); None (an
    interactive session) gives None: nothing is saved.
    """
    if metrics_path is None:
        return None
    path = Path(metrics_path)
    name = path.name.removeprefix(".").removesuffix(".metrics.json")
    return path.with_name(f"{name}-{suffix}")


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    os.replace(tmp, path)
