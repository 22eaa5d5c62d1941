"""Datasets of the study: COCO-Stuff-3/15 and Potsdam-3/6 as the paper builds them (facts section 3),
and the offline real sets CamVid (COCO analogue) and Dubai aerial (Potsdam analogue).

    download(name, root)                 fetch the official archives (potsdam, cocostuff)
    prepare(name, src, out)              compact cache at working resolution
    load_split(dataset, split, ...)      -> SegmentationSet (in memory)
    batches(set, batch_size=, crop=, train=, generator=, device=, drop_last=)
"""
from .base import SegmentationSet, batches, filter_coverage, make_set
from .download import download
from .load import SPLITS, coverage_counts, default_prescale, family_of, load_split
from .paths import data_root, shared_data_dir, source_dir
from .cache import cache_dir, cache_name
from .prepare import prepare

__all__ = [
    "SPLITS", "SegmentationSet", "batches", "cache_dir", "cache_name", "coverage_counts", "data_root", "default_prescale",
    "download", "family_of", "filter_coverage", "load_split", "make_set", "prepare", "shared_data_dir",
    "source_dir",
]
