"""Dubai aerial imagery (MBRSC / Humans in the Loop, ../shared/data/dubai-aerial): the Potsdam analogue.

72 RGB JPEGs in 8 tiles (`Tile 1` .. `Tile 8`, each with images/*.jpg and masks/*.png). The mask colours
are those measured in the data README (the bundled classes.json is wrong): building (60,16,152),
land (132,41,246), road (110,193,228), vegetation (254,221,58), water (226,169,41), unlabeled
(155,155,155) -> ignore, black (0,0,0) (unannotated) -> ignore. Any other colour is an error.

- dubai5: building 0, land 1, road 2, vegetation 3, water 4 (order of iicrepro.config.DATASETS["dubai5"]).
- dubai3: bare land 0, built-up (building + road) 1, vegetation + water 2: three groups of similar size,
  like Potsdam-3 merges Potsdam's six classes (facts section 3).

Like Potsdam (halved, then cut into 200x200 patches), images are pre-scaled (default x0.5) and cut into
patch x patch squares on a grid from the top-left corner, partial borders dropped. The patch side follows
the pre-scale (`patch=None`: 400 source pixels, 200 at x0.5, 100 at the CPU scale's x0.25), so a patch
always covers the same ground, a crop of the preset's size (x0.5: 200; CPU scale: 100) is a whole patch
as in Potsdam, and an epoch covers the whole training area at every scale; `patch=N` fixes it.

Splits keep whole source images apart, so patches of one image never sit on both sides:
- split_by="image" (default): a seeded choice of `heldout_per_tile` images of every tile is "heldout"
  (16 of 72 images; every tile is represented on both sides);
- split_by="tile": a seeded choice of `heldout_tiles` whole tiles is "heldout" (stricter, but the tiles
  differ 20-fold in area: at x0.5, Tile 7 gives 180 of the 450 patches, Tile 8 135, Tiles 1-3 9 each, so
  the heldout share swings from 4 % to 70 % with the seed).
The rest is "train" (= "paper_eval", transductive); paper_split=True uses every image for both.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np

from .files import IGNORE, check_same_size, read_image

MASK_FROM_LABELS = False  # Potsdam analogue: every pixel counts in the loss (masks all ones)
OPTIONS = {"split_by": "image", "heldout_per_tile": 2, "heldout_tiles": 2, "seed": 0, "patch": None}
PATCH_SOURCE_PIXELS = 400  # Potsdam's cut: 200x200 patches of tiles halved; the Dubai patch at pre-scale p is 400 p
LOAD_TIME_OPTIONS = tuple(OPTIONS)  # none of them changes the records a cache stores

COLOURS = {  # RGB -> name, measured on the masks (data README)
    (60, 16, 152): "building", (132, 41, 246): "land", (110, 193, 228): "road",
    (254, 221, 58): "vegetation", (226, 169, 41): "water", (155, 155, 155): "unlabeled", (0, 0, 0): "black",
}
CLASS_IDS = {
    "dubai5": {"building": 0, "land": 1, "road": 2, "vegetation": 3, "water": 4},
    "dubai3": {"land": 0, "building": 1, "road": 1, "vegetation": 2, "water": 2},
}


def _codes(rgb: np.ndarray) -> np.ndarray:
    """Pack uint8 (..., 3) colours into int32 codes r << 16 | g << 8 | b."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colours_to_ids(mask: np.ndarray, variant: str, path: Path) -> np.ndarray:
    """Colour mask uint8 (H, W, 3) -> class ids uint8 (H, W); unknown colours raise naming the file."""
    if variant not in CLASS_IDS:
        raise ValueError(f"unknown Dubai variant {variant!r}: expected one of {sorted(CLASS_IDS)}")
    table = sorted((_codes(np.array(rgb)), CLASS_IDS[variant].get(name, IGNORE)) for rgb, name in COLOURS.items())
    keys = np.array([k for k, _ in table])
    values = np.array([v for _, v in table], dtype=np.uint8)
    codes = _codes(mask)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    unknown = keys[pos] != codes
    if unknown.any():
        bad = np.unique(codes[unknown])[:5]
        colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in bad.tolist()]
        raise ValueError(f"mask {path} holds colours {colours} that are not Dubai class colours")
    return values[pos]


def _tile_key(name: str) -> tuple:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else 1 << 30, name)


def groups(variant: str, source: Path, **_: object) -> dict[str, list[str]]:
    """{"Tile 1": ["Tile 1/image_part_001", ...], ...}: records are source images, grouped by tile."""
    source = Path(source)
    if variant not in CLASS_IDS:
        raise ValueError(f"unknown Dubai variant {variant!r}: expected one of {sorted(CLASS_IDS)}")
    tiles = sorted((p.name for p in source.glob("Tile *") if p.is_dir()), key=_tile_key) if source.is_dir() else []
    if not tiles:
        raise FileNotFoundError(f"Dubai folder {source} is missing or holds no 'Tile N' folders")
    out = {}
    for tile in tiles:
        folder = source / tile / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"Dubai tile folder {folder} is missing")
        out[tile] = [f"{tile}/{p.stem}" for p in sorted(folder.glob("*.jpg"))]
    return out


def split_tiles(tiles: list[str], *, heldout_tiles: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded choice of held-out tiles: (train tiles, heldout tiles), each in tile order."""
    if not 0 <= heldout_tiles < len(tiles):
        raise ValueError(f"heldout_tiles={heldout_tiles}: expected 0..{len(tiles) - 1}")
    held = set(random.Random(seed).sample(sorted(tiles, key=_tile_key), heldout_tiles))
    return [t for t in tiles if t not in held], [t for t in tiles if t in held]


def split_records(groups: dict[str, list[str]], *, split_by: str = "image", heldout_per_tile: int = 2,
                  heldout_tiles: int = 2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train records, heldout records), each in tile then image order; seeded."""
    tiles = sorted(groups, key=_tile_key)
    if split_by == "tile":
        train_tiles, held_tiles = split_tiles(tiles, heldout_tiles=heldout_tiles, seed=seed)
        return [r for t in train_tiles for r in groups[t]], [r for t in held_tiles for r in groups[t]]
    if split_by != "image":
        raise ValueError(f"split_by={split_by!r}: expected 'image' or 'tile'")
    rng, held = random.Random(seed), set()
    for tile in tiles:
        if not 0 <= heldout_per_tile < len(groups[tile]):
            raise ValueError(f"heldout_per_tile={heldout_per_tile}: {tile} has {len(groups[tile])} images")
        held.update(rng.sample(groups[tile], heldout_per_tile))
    every = [r for t in tiles for r in groups[t]]
    return [r for r in every if r not in held], [r for r in every if r in held]


def select(groups: dict[str, list[str]], split: str, *, paper_split: bool = False, split_by: str = "image",
           heldout_per_tile: int = 2, heldout_tiles: int = 2, seed: int = 0, **_: object) -> list[str]:
    """Record ids (source images) of a split; patches are cut afterwards by to_samples."""
    every = [r for t in sorted(groups, key=_tile_key) for r in groups[t]]
    if split == "all" or split in groups:
        return list(every if split == "all" else groups[split])
    if split not in ("train", "paper_eval", "heldout"):
        raise ValueError(f"unknown Dubai split {split!r}: expected train, paper_eval, heldout, all or a tile")
    train, held = (every, []) if paper_split else split_records(
        groups, split_by=split_by, heldout_per_tile=heldout_per_tile, heldout_tiles=heldout_tiles, seed=seed)
    return list(held if split == "heldout" else train)


def files(source: Path, record: str) -> list[Path]:
    tile, stem = record.split("/", 1)
    return [Path(source) / tile / "images" / f"{stem}.jpg", Path(source) / tile / "masks" / f"{stem}.png"]


def meta_files(variant: str, source: Path, **_: object) -> list[Path]:
    return []


def read(variant: str, source: Path, record: str) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (H, W, 3) and class ids uint8 (H, W) of one source image at full resolution."""
    image_path, mask_path = files(source, record)
    image = read_image(image_path)
    mask = read_image(mask_path)  # palette or RGB PNG -> RGB
    check_same_size(image, mask, mask_path)
    return image, colours_to_ids(mask, variant, mask_path)


def patch_side(prescale: float, patch: int | None = None) -> int:
    """The patch side in pre-scaled pixels: ``patch`` when given, else 400 source pixels x ``prescale``."""
    side = round(PATCH_SOURCE_PIXELS * prescale) if patch is None else patch
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"Dubai patch={patch!r} at prescale {prescale}: expected a patch side >= 1 pixel")
    return side


def to_samples(images: list, labels: list, ids: list, *, prescale: float, patch: int | None = None,
               **_: object) -> tuple[list, list, list]:
    """Cut each (C, H, W) image / (H, W) label into patch x patch squares (grid from the top-left);
    images already pre-scaled by ``prescale`` (the patch side follows it unless ``patch`` is given)."""
    patch = patch_side(prescale, patch)
    out_images, out_labels, out_ids = [], [], []
    for image, label, rid in zip(images, labels, ids):
        rows, cols = label.shape[0] // patch, label.shape[1] // patch
        for r in range(rows):
            for c in range(cols):
                window = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
                out_images.append(image[:, window[0], window[1]].contiguous())
                out_labels.append(label[window].contiguous())
                out_ids.append(f"{rid}/r{r}c{c}")
    return out_images, out_labels, out_ids

