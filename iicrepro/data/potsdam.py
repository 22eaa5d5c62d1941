"""Potsdam, as the authors prepared it (robots.ox.ac.uk/~xuji/datasets/Potsdam.tar.gz; facts section 3).

Layout: imgs/<id>.mat (key "img", uint8 200x200x4 RGB+IR), gt/<id>.mat (key "gt", int 0..5; only for
labelled ids), split files unlabelled_train.txt (3,150), labelled_train.txt (4,545), labelled_test.txt
(855). Classes 0 road/impervious, 1 building, 2 low vegetation, 3 tree, 4 car, 5 clutter.

- potsdam6: the six classes.
- potsdam3: {road, car} -> 0, {building, clutter} -> 1, {low vegetation, tree} -> 2 (the original's
  _fine_to_coarse_dict).

Images are RGB+IR; batches() scales all four channels to [0, 1]. Unlabelled ids get all-255 labels.
Splits: train = unlabelled_train + labelled_train, paper_eval = labelled_train, heldout = labelled_test.
paper_split=True is the paper's transductive setting: train = all 8,550, paper_eval = labelled_train +
labelled_test (5,400), heldout empty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import IGNORE, load_mat, map_labels

MASK_FROM_LABELS = False  # the original's Potsdam masks are all ones (unlabelled images train too)
OPTIONS: dict = {}
SPLIT_FILES = ("unlabelled_train", "labelled_train", "labelled_test")
LUTS = {"potsdam6": [0, 1, 2, 3, 4, 5], "potsdam3": [0, 1, 2, 2, 0, 1]}


def _lut(variant: str) -> np.ndarray:
    if variant not in LUTS:
        raise ValueError(f"unknown Potsdam variant {variant!r}: expected one of {sorted(LUTS)}")
    lut = np.full(256, IGNORE, dtype=np.uint8)
    lut[:6] = LUTS[variant]
    return lut


def groups(variant: str, source: Path, **_: object) -> dict[str, list[str]]:
    """The three split files as {name: [ids]} (ids as written, e.g. "1234")."""
    _lut(variant)
    out = {}
    for name in SPLIT_FILES:
        path = Path(source) / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"Potsdam split file {path} is missing")
        out[name] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for name in ("labelled_train", "labelled_test"):  # a labelled id without its gt file is an error
        missing = [i for i in out[name] if not (Path(source) / "gt" / f"{i}.mat").is_file()]
        if missing:
            raise FileNotFoundError(f"Potsdam: {len(missing)} ids of {name}.txt have no label file, e.g. "
                                    f"{Path(source) / 'gt' / (missing[0] + '.mat')}")
    return out


def select(groups: dict[str, list[str]], split: str, *, paper_split: bool = False,
           **_: object) -> list[str]:
    """Record ids of a split name (see the module docstring)."""
    unl, lab, test = (groups[name] for name in SPLIT_FILES)
    table = {"train": unl + lab + test if paper_split else unl + lab,
             "paper_eval": lab + test if paper_split else lab,
             "heldout": [] if paper_split else test,
             "all": unl + lab + test, **groups}
    if split not in table:
        raise ValueError(f"unknown Potsdam split {split!r}: expected one of {sorted(table)}")
    return list(table[split])


def files(source: Path, record: str) -> list[Path]:
    paths = [Path(source) / "imgs" / f"{record}.mat"]
    gt = Path(source) / "gt" / f"{record}.mat"
    return paths + [gt] if gt.exists() else paths


def meta_files(variant: str, source: Path, **_: object) -> list[Path]:
    return [Path(source) / f"{name}.txt" for name in SPLIT_FILES]


def read(variant: str, source: Path, record: str) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (200, 200, 4) RGB+IR and mapped label uint8 (200, 200) (all 255 when unlabelled)."""
    image_path = Path(source) / "imgs" / f"{record}.mat"
    image = load_mat(image_path, "img")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"{image_path}: expected uint8 (H, W, 4) RGB+IR, got {image.dtype} {image.shape}")
    gt_path = Path(source) / "gt" / f"{record}.mat"
    if not gt_path.exists():
        return image, np.full(image.shape[:2], IGNORE, dtype=np.uint8)
    raw = load_mat(gt_path, "gt")
    if raw.shape != image.shape[:2]:
        raise ValueError(f"size mismatch for {gt_path}: image {image.shape[:2]} vs label {raw.shape}")
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 5:
        raise ValueError(f"label file {gt_path} holds ids outside the class range 0..5 "
                         f"(min {raw.min()}, max {raw.max()})")
    return image, map_labels(raw.astype(np.uint8), _lut(variant), 5, gt_path)
