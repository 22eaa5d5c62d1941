"""What loading and caching share: the family module of a dataset, its options, reading and building sets.

Both iicrepro.data.load (from the distributed layout) and iicrepro.data.cache / prepare (the compact cache)
import from here, so the data modules form a one-way chain: records <- cache <- load, records <- prepare.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import DATASETS, PRESETS
from . import camvid, cocostuff, dubai, potsdam
from .base import SegmentationSet, filter_coverage, make_set
from .files import resize_pair, to_chw

FAMILIES = {"cocostuff": cocostuff, "potsdam": potsdam, "camvid": camvid, "dubai": dubai}


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
              prescale: float, min_coverage: float = 0.0, max_images: int | None = None,
              info: dict | None = None) -> SegmentationSet:
    """Records (pre-scaled by ``prescale``) -> samples (Dubai: patches) -> SegmentationSet, then the coverage
    filter and the cap."""
    family, spec = family_of(dataset), DATASETS[dataset]
    if hasattr(family, "to_samples"):
        images, labels, ids = family.to_samples(images, labels, ids, prescale=prescale, **options)
    data = make_set(dataset, split, images, labels, ids, class_names=spec.class_names,
                    mask_from_labels=family.MASK_FROM_LABELS, info=info, channels=spec.image_channels)
    data = filter_coverage(data, min_coverage)
    if max_images is not None and len(data) > max_images:
        data = data.select(range(max_images))
    return data
