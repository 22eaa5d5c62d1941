"""The sets of one run: its training set and its evaluation sets, read and restricted in one place.

Both ways a run gets its data (the notebooks through iicrepro.experiment.load_data, and fit() called without
sets) come here, so the paper protocol's sets, the held-out split, the dataset-size fraction and the smoke
caps mean the same thing everywhere (../shared/DESIGN.md, "the two protocols").
"""
from __future__ import annotations

from .base import SegmentationSet
from .load import load_split

EVAL_SPLITS = ("paper_eval", "heldout")


def read_run_sets(dataset: str, *, source: dict, prescale: float | None, paper_split: bool, min_coverage: float,
                  max_images: int | None = None, max_eval_images: int | None = None
                  ) -> tuple[SegmentationSet, dict]:
    """(train, {"paper_eval": set, "heldout": set}) from `source` (load_split's root= or cache= keyword).

    paper_split: the paper's transductive sets (no "heldout": an empty split is dropped). min_coverage: drop
    images with fewer counted pixels, in every split. max_images / max_eval_images stop reading early
    (pass max_images only when no fraction is drawn afterwards, or the draw would see a prefix).
    """
    kwargs = dict(source, prescale=prescale, paper_split=paper_split, min_coverage=min_coverage)
    train_set = load_split(dataset, "train", max_images=max_images, **kwargs)
    eval_sets = {split: load_split(dataset, split, max_images=max_eval_images, **kwargs) for split in EVAL_SPLITS}
    return train_set, {split: s for split, s in eval_sets.items() if len(s)}


def restrict(train_set: SegmentationSet, eval_sets: dict, *, data_fraction: float, seed: int,
             max_images: int | None, max_eval_images: int | None) -> tuple[SegmentationSet, dict]:
    """The run's share of the sets: a seeded fraction of the training images (dataset-size ablation), then at
    most max_images of them; the paper protocol's set keeps only the images trained on (it is transductive);
    at most max_eval_images per evaluation set (smoke runs)."""
    full = len(train_set)
    if data_fraction < 1:
        train_set = train_set.subset(data_fraction, seed=seed)
    if max_images is not None:
        train_set = train_set.select(range(min(max_images, len(train_set))))
    eval_sets = dict(eval_sets)
    if len(train_set) < full and len(eval_sets.get("paper_eval", ())):
        eval_sets["paper_eval"] = same_images(eval_sets["paper_eval"], train_set)
    if max_eval_images is not None:
        eval_sets = {k: s.select(range(min(max_eval_images, len(s)))) for k, s in eval_sets.items()}
    return train_set, eval_sets


def same_images(eval_set: SegmentationSet, train_set: SegmentationSet) -> SegmentationSet:
    """The samples of eval_set that are also in train_set (by id); all of eval_set if none are."""
    trained = set(train_set.ids)
    keep = [i for i, sample in enumerate(eval_set.ids) if sample in trained]
    return eval_set.select(keep) if keep else eval_set
