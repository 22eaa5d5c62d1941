"""COCO-Stuff class tables: fine ids of the stuffthingmaps PNGs -> the COCO-Stuff-3 and -15 classes.

stuffthingmaps_trainval2017 PNGs hold one fine id per pixel, 0-based: things 0..90 (91 COCO ids, some
unused), stuff 91..181 (the 91 stuff classes in alphabetical order, banner .. wood), 255 unlabelled.

Coarse classes follow the official COCO-Stuff hierarchy (cocostuff-hierarchy; the authors' copy is
code/datasets/segmentation/util/cocostuff_hierarchy.y and the pickled fine_to_coarse_dict of xu-ji/IIC):
coarse ids 0..11 are the thing groups, 12..26 the stuff groups ceiling, floor, food, furniture,
rawmaterial, textile, wall, window, building, ground, plant, sky, solid, structural, water.
COCO-Stuff-15 = coarse 12..26 -> 0..14; COCO-Stuff-3 = sky / plant / ground (facts section 3).
"""
from __future__ import annotations

import numpy as np

IGNORE = 255
FIRST_STUFF = 91  # first fine stuff id (0-based stuffthingmaps indexing)

# The 15 coarse stuff groups (coarse ids 12..26) and their fine members, from the official hierarchy.
STUFF_GROUPS: dict[str, tuple[str, ...]] = {
    "ceiling": ("ceiling-tile", "ceiling-other"),
    "floor": ("carpet", "floor-tile", "floor-wood", "floor-marble", "floor-stone", "floor-other"),
    "food": ("fruit", "salad", "vegetable", "food-other"),
    "furniture": ("door-stuff", "desk-stuff", "table", "shelf", "cabinet", "cupboard", "mirror-stuff",
                  "counter", "light", "stairs", "furniture-other"),
    "rawmaterial": ("cardboard", "paper", "plastic", "metal"),
    "textile": ("rug", "mat", "towel", "napkin", "clothes", "cloth", "curtain", "blanket", "pillow", "banner",
                "textile-other"),
    "wall": ("wall-tile", "wall-panel", "wall-wood", "wall-brick", "wall-stone", "wall-concrete", "wall-other"),
    "window": ("window-blind", "window-other"),
    "building": ("house", "skyscraper", "bridge", "tent", "roof", "building-other"),
    "ground": ("sand", "snow", "dirt", "mud", "gravel", "road", "pavement", "railroad", "platform",
               "playingfield", "ground-other"),
    "plant": ("grass", "tree", "bush", "leaves", "flower", "branch", "moss", "straw", "plant-other"),
    "sky": ("clouds", "sky-other"),
    "solid": ("wood", "rock", "stone", "mountain", "hill", "solid-other"),
    "structural": ("fence", "cage", "net", "railing", "structural-other"),
    "water": ("fog", "river", "sea", "waterdrops", "water-other"),
}
COARSE15 = tuple(STUFF_GROUPS)  # order = coarse ids 12..26 = COCO-Stuff-15 ids 0..14
# Fine stuff names in fine-id order 91..181 (alphabetical, as in COCO-Stuff's labels.txt).
STUFF_NAMES: tuple[str, ...] = tuple(sorted(name for members in STUFF_GROUPS.values() for name in members))

# COCO-Stuff-3 (facts section 3), fine ids written out as in the facts; checked against the groups in tests.
STUFF3_FINE: dict[str, tuple[int, ...]] = {
    "sky": (105, 156),
    "plant": (93, 96, 118, 123, 128, 133, 141, 162, 168),
    "ground": (110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158),
}


def fine_id(name: str) -> int:
    """Fine (0-based stuffthingmaps) id of a stuff class name, e.g. "sky-other" -> 156."""
    return FIRST_STUFF + STUFF_NAMES.index(name)


def stuff_fine_to_coarse() -> dict[int, int]:
    """{fine stuff id 91..181: coarse id 12..26} (the official fine -> coarse map, stuff part)."""
    return {fine_id(name): 12 + COARSE15.index(group)
            for group, members in STUFF_GROUPS.items() for name in members}


def lut(variant: str) -> np.ndarray:
    """256-entry map from fine ids to the variant's class ids; things, unlabelled (255), others -> 255."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    if variant == "cocostuff15":
        for fine, coarse in stuff_fine_to_coarse().items():
            table[fine] = coarse - 12
    elif variant == "cocostuff3":
        for class_id, fines in enumerate(STUFF3_FINE.values()):
            table[list(fines)] = class_id
    else:
        raise ValueError(f"unknown COCO-Stuff variant {variant!r}: expected cocostuff3 or cocostuff15")
    return table


assert len(STUFF_NAMES) == 91 and len(set(STUFF_NAMES)) == 91
