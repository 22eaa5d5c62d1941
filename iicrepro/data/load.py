"""load_split(): one split of one dataset variant, from its distributed layout or from a prepared cache.

Split names shared by every dataset (../shared/DESIGN.md, "the two protocols"):
  "train"       images trained on;
  "paper_eval"  labelled images the paper protocol evaluates on (a subset of train: transductive);
  "heldout"     labelled images never trained on (label-free protocol); may be empty;
  "all"         every image; plus each family's raw groups (e.g. CamVid "raw_val", Potsdam "labelled_test").
paper_split=True gives each dataset the paper's fully transductive setting (heldout empty).
"""
from __future__ import annotations

from ..config import DATASETS
from .base import SegmentationSet
from .cache import load_cached
from .paths import source_dir
from .records import build_set, default_prescale, family_of, family_options, read_records

SPLITS = ("train", "paper_eval", "heldout")


def load_split(dataset: str, split: str, *, root=None, cache=None, prescale: float | None = None,
               paper_split: bool = False, min_coverage: float = 0.0, max_images: int | None = None,
               progress: bool = False, **options) -> SegmentationSet:
    """Load one split of `dataset` into memory.

    root: data root or the dataset's own folder (default $IICREPRO_DATA, else ./data).
    cache: a folder written by prepare() (the dataset's folder or the cache root); read instead of root.
    prescale: resize factor before cropping (default: the preset's); must match the cache's.
    min_coverage: keep samples with at least this share of labelled pixels (CamVid's analogue of COCO's 75%
      rule; default 0 keeps all). max_images: cap on samples (smoke runs).
    options: family options (Dubai: heldout_tiles, seed, patch; COCO-Stuff: lists, list_dir, list_name,
      rule_min_side, rule_min_coverage; see each module's OPTIONS).
    """
    options = family_options(dataset, options)
    if cache is not None:
        return load_cached(dataset, split, cache, prescale=prescale, paper_split=paper_split,
                           min_coverage=min_coverage, max_images=max_images, **options)
    family = family_of(dataset)
    prescale = default_prescale(dataset) if prescale is None else float(prescale)
    source = source_dir(DATASETS[dataset].family, root)
    records = family.select(family.groups(dataset, source, **options), split, paper_split=paper_split, **options)
    if max_images is not None and not hasattr(family, "to_samples"):
        records = records[:max_images]
    images, labels = read_records(dataset, source, records, prescale=prescale, progress=progress)
    info = dict(source=str(source), prescale=prescale, paper_split=paper_split, options=options)
    return build_set(dataset, split, images, labels, records, options=options, prescale=prescale,
                     min_coverage=min_coverage, max_images=max_images, info=info)


def coverage_counts(dataset: str, thresholds=(0.0, 0.5, 0.6, 0.75), *, split: str = "all",
                    **load_kwargs) -> dict[float, int]:
    """How many samples of a split keep at least each share of labelled pixels (e.g. CamVid-3 frames)."""
    data = load_split(dataset, split, **load_kwargs)
    share = data.coverage()
    return {float(t): int((share >= t).sum()) for t in thresholds}
