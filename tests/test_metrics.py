"""Tests of iicrepro.metrics: confusion matrix against a slow reference, matching, hand-computed scores."""

import math

import numpy as np
import pytest
import torch

from iicrepro.metrics import ConfusionMatrix, class_confusion, match_hungarian, match_majority, scores


def slow_confusion(pred, target, num_clusters, num_classes, ignore_index=255, mask=None):
    """Pixel-by-pixel loop: the independent reference for the bincount version."""
    matrix = torch.zeros(num_clusters, num_classes, dtype=torch.int64)
    keep = torch.ones_like(target, dtype=torch.bool) if mask is None else mask
    for p, t, k in zip(pred.flatten().tolist(), target.flatten().tolist(), keep.flatten().tolist()):
        if t != ignore_index and k:
            matrix[p, t] += 1
    return matrix


def random_batch(generator, shape, num_clusters, num_classes, ignore_frac=0.2):
    pred = torch.randint(0, num_clusters, shape, generator=generator)
    target = torch.randint(0, num_classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < ignore_frac] = 255
    return pred, target


def test_bincount_equals_slow_reference():
    gen = torch.Generator().manual_seed(0)
    pred, target = random_batch(gen, (3, 9, 11), num_clusters=5, num_classes=4)
    mask = torch.rand(pred.shape, generator=gen) < 0.7
    cm = ConfusionMatrix(num_clusters=5, num_classes=4)
    cm.update(pred, target, mask=mask)
    assert cm.matrix.dtype == torch.int64
    assert cm.matrix.shape == (5, 4)
    assert torch.equal(cm.matrix, slow_confusion(pred, target, 5, 4, mask=mask))


def test_streaming_equals_one_batch():
    gen = torch.Generator().manual_seed(1)
    batches = [random_batch(gen, (2, 8, 8), num_clusters=6, num_classes=6) for _ in range(3)]
    streamed = ConfusionMatrix(num_clusters=6, num_classes=6)
    for pred, target in batches:
        streamed.update(pred, target)
    whole = ConfusionMatrix(num_clusters=6, num_classes=6)
    whole.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    assert torch.equal(streamed.matrix, whole.matrix)
    assert int(streamed.matrix.sum()) == sum(int((b[1] != 255).sum()) for b in batches)


def test_ignore_pixels_not_counted_and_reset_merge():
    pred = torch.tensor([[[0, 1], [1, 7]]])  # cluster 7 is out of range but sits on an ignored pixel
    target = torch.tensor([[[0, 255], [1, 255]]])
    cm = ConfusionMatrix(num_clusters=2, num_classes=2)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]
    other = ConfusionMatrix(num_clusters=2, num_classes=2)
    other.update(pred, target, mask=torch.tensor([[[False, True], [True, True]]]))
    assert other.matrix.tolist() == [[0, 0], [0, 1]]
    cm.merge(other).all_reduce()  # all_reduce is a no-op without torch.distributed
    assert cm.matrix.tolist() == [[1, 0], [0, 2]]
    cm.reset()
    assert int(cm.matrix.sum()) == 0


def test_permutation_scores_perfectly():
    gen = torch.Generator().manual_seed(2)
    target = torch.randint(0, 4, (2, 6, 6), generator=gen)
    perm = torch.tensor([2, 0, 3, 1])  # class c is predicted as cluster perm[c]
    cm = ConfusionMatrix(num_clusters=4, num_classes=4)
    cm.update(perm[target], target)
    mapping = match_hungarian(cm.matrix)
    assert mapping[perm.numpy()].tolist() == [0, 1, 2, 3]
    result = scores(cm.matrix, mapping)
    assert result["acc"] == 1.0 and result["miou"] == 1.0
    assert result["counted_pixels"] == 72


def test_hand_computed_accuracy_and_iou():
    # rows clusters, cols classes.  Hungarian: 0->1 (5) and 1->0 (4) gives 9 > 0->0 (2) + 1->1 (1) = 3.
    matrix = np.array([[2, 5],
                       [4, 1]])
    mapping = match_hungarian(matrix)
    assert mapping.tolist() == [1, 0]
    # class confusion (rows predicted, cols true): predicted 0 = cluster 1 = [4, 1]; predicted 1 = [2, 5].
    assert class_confusion(matrix, mapping).tolist() == [[4, 1], [2, 5]]
    result = scores(matrix, mapping)
    # acc = (4 + 5) / 12 = 0.75
    assert result["acc"] == pytest.approx(0.75)
    # class 0: TP 4, FP 1 (true 1 predicted 0), FN 2 -> 4 / 7;  class 1: TP 5, FP 2, FN 1 -> 5 / 8
    assert result["per_class_iou"] == pytest.approx([4 / 7, 5 / 8])
    assert result["miou"] == pytest.approx((4 / 7 + 5 / 8) / 2)
    assert result["counted_pixels"] == 12


def test_absent_class_is_nan_and_excluded_from_miou():
    # 3 classes, class 2 never occurs and is never predicted (clusters 0, 1 map to classes 0, 1).
    matrix = np.array([[3, 1, 0],
                       [0, 4, 0],
                       [0, 0, 0]])
    result = scores(matrix, np.array([0, 1, 2]))
    # class 0: TP 3, FP 1, FN 0 -> 3/4;  class 1: TP 4, FP 0, FN 1 -> 4/5;  class 2: 0/0 -> NaN
    assert result["per_class_iou"][:2] == pytest.approx([3 / 4, 4 / 5])
    assert math.isnan(result["per_class_iou"][2])
    assert result["miou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert result["acc"] == pytest.approx(7 / 8)


def test_hungarian_with_more_clusters_leaves_extra_unassigned():
    # K = 3 clusters, C = 2 classes.  Best one-to-one: 0->0 (6), 2->1 (5); cluster 1 -> -1.
    matrix = np.array([[6, 1],
                       [2, 3],
                       [0, 5]])
    mapping = match_hungarian(matrix)
    assert mapping.tolist() == [0, -1, 1]
    result = scores(matrix, mapping)
    # acc = (6 + 5) / 17.  Predicted 0 = cluster 0 = [6, 1]; predicted 1 = cluster 2 = [0, 5].
    # class 0: TP 6, FP 1, FN 2 (cluster 1) -> 6/9.  class 1: TP 5, FP 0, FN 4 (1 + 3) -> 5/9.
    assert result["acc"] == pytest.approx(11 / 17)
    assert result["per_class_iou"] == pytest.approx([6 / 9, 5 / 9])


def test_majority_matching_many_to_one():
    # K = 4 clusters, C = 2 classes: clusters 0, 2 mostly class 0; clusters 1, 3 mostly class 1.
    matrix = np.array([[5, 1],
                       [0, 3],
                       [4, 2],
                       [1, 6]])
    mapping = match_majority(matrix)
    assert mapping.tolist() == [0, 1, 0, 1]
    result = scores(matrix, mapping)
    # acc = (5 + 3 + 4 + 6) / 22 = 18/22.  Predicted 0 = rows 0 + 2 = [9, 3]; predicted 1 = [1, 9].
    # class 0: TP 9, FP 3, FN 1 -> 9/13.  class 1: TP 9, FP 1, FN 3 -> 9/13.
    assert result["acc"] == pytest.approx(18 / 22)
    assert result["per_class_iou"] == pytest.approx([9 / 13, 9 / 13])


def test_bad_inputs_raise_clear_errors():
    cm = ConfusionMatrix(num_clusters=3, num_classes=2)
    with pytest.raises(ValueError, match=r"\(1, 2, 2\).*\(1, 2, 3\)"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cluster id \(pred\) 3 is out of range.*\[0, 2\]"):
        cm.update(torch.tensor([[[0, 3]]]), torch.tensor([[[0, 1]]]))
    with pytest.raises(ValueError, match=r"cluster id \(pred\) -1 is out of range"):
        cm.update(torch.tensor([[[-1, 0]]]), torch.tensor([[[0, 1]]]))
    with pytest.raises(ValueError, match=r"class id .* 5 is out of range.*\[0, 1\]"):
        cm.update(torch.tensor([[[0, 1]]]), torch.tensor([[[5, 255]]]))
    with pytest.raises(ValueError, match="mask"):
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long),
                  mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mapping must have shape \(3,\)"):
        scores(cm.matrix, np.array([0, 1]))
    with pytest.raises(ValueError, match="cannot merge"):
        cm.merge(ConfusionMatrix(num_clusters=2, num_classes=2))
    assert int(cm.matrix.sum()) == 0  # failed updates added nothing
