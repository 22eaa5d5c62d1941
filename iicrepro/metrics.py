"""Evaluation of unsupervised segmentation: streaming confusion matrix, cluster-to-class matching, scores.

The protocol follows IIC (Ji et al., ICCV 2019), section 4.2 and the supplement, as implemented in the
released code's evaluation: the network's argmax per pixel gives a cluster id; one confusion matrix is
accumulated over every counted (masked-in, non-ignored) pixel of the whole evaluation set; clusters are
matched to classes once, one-to-one by the Hungarian method for the main head (K == C) or many-to-one
(majority) for overclustered outputs; accuracy is correct pixels / counted pixels over the whole set, not a
mean of per-image accuracies.

Unlike the released code, which kept every pixel prediction of the set on the GPU, memory here is
O(K * C): each batch is folded into the matrix with one ``torch.bincount`` (as in STEGO).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist
from scipy.optimize import linear_sum_assignment

UNASSIGNED = -1  # mapping value of a cluster matched to no class: its pixels are never correct


class ConfusionMatrix:
    """Streaming (K, C) pixel counts: rows are clusters, columns are ground-truth classes.

    ``update`` may be called once per batch; the matrix lives on ``device`` (int64) so that accumulation
    needs no host transfer; ``.matrix`` returns a CPU copy.
    """

    def __init__(self, num_clusters: int, num_classes: int, ignore_index: int = 255, device=None):
        if num_clusters < 1 or num_classes < 1:
            raise ValueError(
                f"num_clusters and num_classes must be >= 1, got {num_clusters} and {num_classes}"
            )
        self.num_clusters = int(num_clusters)  # K
        self.num_classes = int(num_classes)  # C
        self.ignore_index = int(ignore_index)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._matrix = torch.zeros(self.num_clusters, self.num_classes, dtype=torch.int64, device=self.device)

    def reset(self) -> None:
        """Set every count back to zero (start of a new evaluation pass)."""
        self._matrix.zero_()

    @property
    def matrix(self) -> torch.Tensor:
        """The accumulated counts, (K, C) int64 on the CPU."""
        return self._matrix.detach().to("cpu", copy=True)

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch.

        pred: (B, H, W) cluster ids in [0, K); target: (B, H, W) class ids in [0, C) or ``ignore_index``;
        mask: optional (B, H, W) bool, True where a pixel counts (the dataset's mask, e.g. COCO-Stuff's
        "stuff only" pixels). A pixel counts iff target != ignore_index and mask is True. Values of
        pred at pixels that do not count are not checked.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape (B, H, W), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        if mask is not None and mask.shape != target.shape:
            raise ValueError(
                f"mask must have the shape of target {tuple(target.shape)}, got {tuple(mask.shape)}"
            )
        pred = pred.to(self.device).reshape(-1).long()  # (N,)
        target = target.to(self.device).reshape(-1).long()  # (N,)
        counted = target != self.ignore_index  # (N,)
        if mask is not None:
            counted &= mask.to(self.device).reshape(-1).bool()
        pred, target = pred[counted], target[counted]  # (M,)
        if pred.numel() == 0:
            return
        _check_range(pred, self.num_clusters, "cluster id (pred)")
        _check_range(target, self.num_classes, f"class id (target, ignore_index={self.ignore_index})")
        flat = pred * self.num_classes + target  # (M,) row-major index into (K, C)
        counts = torch.bincount(flat, minlength=self.num_clusters * self.num_classes)
        self._matrix += counts.view(self.num_clusters, self.num_classes)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add the counts of another matrix of the same size (e.g. from another data loader); returns self."""
        if (other.num_clusters, other.num_classes) != (self.num_clusters, self.num_classes):
            raise ValueError(
                f"cannot merge a ({other.num_clusters}, {other.num_classes}) confusion matrix into a "
                f"({self.num_clusters}, {self.num_classes}) one"
            )
        self._matrix += other._matrix.to(self.device)
        return self

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the counts over all processes when torch.distributed is initialised (DDP); else a no-op.

        Every rank must call it; afterwards each holds the counts of the whole evaluation set.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._matrix, op=dist.ReduceOp.SUM)
        return self


def _check_range(values: torch.Tensor, upper: int, what: str) -> None:
    """Raise ValueError if any value is outside [0, upper)."""
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= upper:
        bad = low if low < 0 else high
        raise ValueError(f"{what} {bad} is out of range: expected values in [0, {upper - 1}]")


def _as_numpy(matrix) -> np.ndarray:
    """(K, C) counts as an int64 numpy array, with a clear error for anything else."""
    if isinstance(matrix, ConfusionMatrix):
        matrix = matrix.matrix
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"confusion matrix must be 2-D (K clusters, C classes), got shape {matrix.shape}")
    return matrix.astype(np.int64)


def match_hungarian(matrix) -> np.ndarray:
    """One-to-one cluster -> class mapping maximising the matched pixels (IIC section 4.2, released eval).

    matrix: (K, C) counts (rows clusters). Solved with ``scipy.optimize.linear_sum_assignment``.
    K == C: a permutation. K > C: C clusters get a class each and the other K - C map to -1, so their
    pixels are never counted as correct (use ``match_majority`` for overclustered heads instead).
    K < C: every cluster gets a distinct class and C - K classes are never predicted.
    Returns mapping (K,) int64, values in [-1, C).
    """
    counts = _as_numpy(matrix)  # (K, C)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = np.full(counts.shape[0], UNASSIGNED, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def match_majority(matrix) -> np.ndarray:
    """Many-to-one mapping: each cluster to its most frequent class (overclustered head A, IIC section 3.2).

    matrix: (K, C) counts. Ties go to the lowest class id; a cluster with no counted pixels maps to
    class 0 (it contributes nothing either way). Returns mapping (K,) int64 in [0, C).
    """
    counts = _as_numpy(matrix)  # (K, C)
    return counts.argmax(axis=1).astype(np.int64)


def class_confusion(matrix, mapping) -> np.ndarray:
    """Fold the (K, C) cluster confusion into a (C, C) class confusion: rows predicted, columns true.

    Pixels of clusters mapped to -1 are dropped here (they are no prediction of any class); ``scores``
    still counts them as wrong and as false negatives of their true class.
    """
    counts = _as_numpy(matrix)  # (K, C)
    num_clusters, num_classes = counts.shape
    mapping = np.asarray(mapping, dtype=np.int64)
    if mapping.shape != (num_clusters,):
        raise ValueError(
            f"mapping must have shape ({num_clusters},) (one class per cluster), got {mapping.shape}"
        )
    if mapping.size and (mapping.min() < UNASSIGNED or mapping.max() >= num_classes):
        raise ValueError(
            f"mapping values must be in [-1, {num_classes - 1}], got {mapping.min()}..{mapping.max()}"
        )
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # (C, C)
    assigned = mapping != UNASSIGNED
    np.add.at(confusion, mapping[assigned], counts[assigned])
    return confusion


def scores(matrix, mapping) -> dict:
    """Accuracy and IoU of a mapped clustering over the whole evaluation set (IIC section 4.2).

    acc = correct pixels / counted pixels (a fraction in [0, 1]; NaN if nothing was counted).
    per_class_iou[c] = TP / (TP + FP + FN); a class absent from both prediction and target has
    TP + FP + FN == 0 and gets NaN, which is excluded from miou (the mean over the other classes; NaN if
    all are absent). Returns dict(acc, miou, per_class_iou (list of C floats), counted_pixels (int)).
    """
    counts = _as_numpy(matrix)  # (K, C)
    confusion = class_confusion(counts, mapping)  # (C, C) rows predicted, cols true
    counted = int(counts.sum())
    true_positive = np.diag(confusion).astype(np.float64)  # (C,)
    predicted = confusion.sum(axis=1)  # (C,) pixels predicted as each class
    actual = counts.sum(axis=0)  # (C,) pixels of each true class, unassigned clusters included
    union = predicted + actual - true_positive  # TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
    present = ~np.isnan(iou)
    return {
        "acc": float(true_positive.sum() / counted) if counted else math.nan,
        "miou": float(iou[present].mean()) if present.any() else math.nan,
        "per_class_iou": [float(v) for v in iou],
        "counted_pixels": counted,
    }
