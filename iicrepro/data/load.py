"""load_split(): one split of one dataset variant, from its distributed layout or from a prepared cache.

Split names shared by every dataset (../shared/DESIGN.md, "the two protocols"):
  "train"       images trained on;
  "paper_eval"  labelled images the paper protocol evaluates on (a subset of train: transductive);
  "heldout"     labelled images never trained on (label-free protocol); may be empty;
  "all"         every image; plus each family's raw groups (e.g. CamVid "raw_val", Potsdam "labelled_test").
paper_split=True gives each dataset the paper's fully transductive setting (heldout empty).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import DATASETS, PRESETS
from . import camvid, cocostuff, dubai, potsdam
from .base import SegmentationSet, filter_coverage, make_set
from .files import resize_pair, to_chw
from .paths import source_dir

FAMILIES = {"cocostuff": cocostuff, "potsdam": potsdam, "camvid": camvid, "dubai": dubai}
SPLITS = ("train", "paper_eval", "heldout")


def family_of(dataset: str):
    """The module that reads `dataset` (a key of iicrepro.config.DATASETS)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {sorted(DATASETS)}")
    return FAMILIES[DATASETS[dataset].family]


def default_prescale(dataset: str) -> float:
    """The preset's pre-scale (facts section 2: x0.33 COCO, none Potsdam; x0.5 for CamVid and Dubai)."""
    return float(PRESETS.get(dataset, {}).get("prescale", 1.0))


def family_options(dataset: str, options: dict) -> dict:
    """The family's options with defaults filled in; unknown names raise ValueError naming them."""
    family = family_of(dataset)
    unknown = sorted(set(options) - set(family.OPTIONS))
    if unknown:
        raise ValueError(f"{dataset}: unknown option(s) {unknown}; valid: {sorted(family.OPTIONS)}")
    return {**family.OPTIONS, **options}


def read_records(dataset: str, source: Path, records: list[str], *, prescale: float,
                 workers: int | None = None, progress: bool = False) -> tuple[list, list]:
    """Read, map and pre-scale records: lists of uint8 (C, H, W) images and uint8 (H, W) labels."""
    family = family_of(dataset)

    def one(record: str):
        image, label = family.read(dataset, source, record)
        image, label = resize_pair(image, label, prescale)
        return to_chw(image), to_chw(label[:, :, None])[0]

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, records)
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=len(records), desc=f"read {dataset}", unit="img")
        pairs = list(results)
    return [x for x, _ in pairs], [y for _, y in pairs]


def build_set(dataset: str, split: str, images: list, labels: list, ids: list[str], *, options: dict,
              min_coverage: float = 0.0, max_images: int | None = None, info: dict | None = None
              ) -> SegmentationSet:
    """Records -> samples (Dubai: patches) -> SegmentationSet, then the coverage filter and the cap."""
    family, spec = family_of(dataset), DATASETS[dataset]
    if hasattr(family, "to_samples"):
        images, labels, ids = family.to_samples(images, labels, ids, **options)
    data = make_set(dataset, split, images, labels, ids, class_names=spec.class_names,
                    mask_from_labels=family.MASK_FROM_LABELS, info=info, channels=spec.image_channels)
    data = filter_coverage(data, min_coverage)
    if max_images is not None and len(data) > max_images:
        data = data.select(range(max_images))
    return data


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
        from .prepare import load_cached
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
    return build_set(dataset, split, images, labels, records, options=options, min_coverage=min_coverage,
                     max_images=max_images, info=info)


def coverage_counts(dataset: str, thresholds=(0.0, 0.5, 0.6, 0.75), *, split: str = "all",
                    **load_kwargs) -> dict[float, int]:
    """How many samples of a split keep at least each share of labelled pixels (e.g. CamVid-3 frames)."""
    data = load_split(dataset, split, **load_kwargs)
    share = data.coverage()
    return {float(t): int((share >= t).sum()) for t in thresholds}
