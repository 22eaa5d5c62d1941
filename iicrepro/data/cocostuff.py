"""COCO-Stuff 164k: official COCO 2017 images + stuffthingmaps PNGs, as the authors used them.

Layout (the authors' setup_cocostuff164k.sh): images/{train2017,val2017}/<id>.jpg,
annotations/{train2017,val2017}/<id>.png (fine ids 0..181, 255 unlabelled), curated/{train2017,val2017}/
<list>.txt (the authors' curated image lists, COCOStuff164kCurated.tar.gz). The authors' runs used
Coco164kFew_Stuff_6 (COCO-Stuff-3, --coco_164k_curated_version 6) and Coco164kFull_Stuff_Coarse_7
(COCO-Stuff-15, version 7) (examples/commands.txt of xu-ji/IIC); both names are parameters.

Without the lists, the curation rule of facts section 3 rebuilds them: keep an image when both sides are
>= 360 px and >= 75 % of its pixels belong to the target classes (sky + plant + ground for COCO-3, the 15
stuff groups for COCO-15); both thresholds are parameters, and rule_counts() reports what each keeps.

Splits: the paper trains and evaluates on the whole curated list (train2017 + val2017 parts; transductive),
which is paper_split=True (heldout empty). By default: train = paper_eval = the train2017 part,
heldout = the val2017 part (never trained on). Images are loaded as RGB (the original kept OpenCV's BGR;
a documented deviation, facts section 3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import cocostuff_classes as classes
from .files import IGNORE, check_same_size, map_labels, read_image, read_label_png

MASK_FROM_LABELS = True  # facts section 3: pixels outside the classes are masked out of loss and metric
PARTITIONS = ("train2017", "val2017")
LIST_NAMES = {"cocostuff3": "Coco164kFew_Stuff_6", "cocostuff15": "Coco164kFull_Stuff_Coarse_7"}
OPTIONS = {"lists": "auto", "list_dir": None, "list_name": None, "rule_min_side": 360, "rule_min_coverage": 0.75}


def list_path(variant: str, source: Path, partition: str, *, list_dir=None, list_name=None) -> Path:
    """<list_dir or source/curated>/<partition>/<list_name>.txt."""
    folder = Path(list_dir) if list_dir is not None else Path(source) / "curated"
    return folder / partition / f"{list_name or LIST_NAMES[variant]}.txt"


def read_list(path: Path) -> list[str]:
    """Image ids of one curated list file (one id per line; a .jpg suffix is tolerated)."""
    if not path.is_file():
        raise FileNotFoundError(f"COCO-Stuff image list {path} is missing")
    return [line.strip().removesuffix(".jpg") for line in path.read_text().splitlines() if line.strip()]


def groups(variant: str, source: Path, *, lists: str = "auto", list_dir=None, list_name=None,
           rule_min_side: int = 360, rule_min_coverage: float = 0.75, **_: object) -> dict[str, list[str]]:
    """{"train2017": ["train2017/<id>", ...], "val2017": [...]} from the curated lists or the rule.

    lists: "curated" (the files must exist), "rule" (scan the annotations), "auto" (curated if present).
    """
    classes.lut(variant)
    source = Path(source)
    if not (source / "annotations").is_dir():
        raise FileNotFoundError(f"COCO-Stuff folder {source} has no annotations/ folder")
    if lists not in ("auto", "curated", "rule"):
        raise ValueError(f"lists={lists!r}: expected 'auto', 'curated' or 'rule'")
    paths = {p: list_path(variant, source, p, list_dir=list_dir, list_name=list_name) for p in PARTITIONS}
    use_curated = lists == "curated" or (lists == "auto" and all(p.is_file() for p in paths.values()))
    if use_curated:
        return {p: [f"{p}/{i}" for i in read_list(path)] for p, path in paths.items()}
    stats = scan(variant, source)
    return {p: [f"{p}/{i}" for i in ids] for p, ids in
            rule_lists(stats, min_side=rule_min_side, min_coverage=rule_min_coverage).items()}


def select(groups: dict[str, list[str]], split: str, *, paper_split: bool = False, **_: object) -> list[str]:
    """Record ids of a split name (see the module docstring)."""
    train, val = groups["train2017"], groups["val2017"]
    table = {"train": train + val if paper_split else train,
             "paper_eval": train + val if paper_split else train,
             "heldout": [] if paper_split else val,
             "all": train + val, **groups}
    if split not in table:
        raise ValueError(f"unknown COCO-Stuff split {split!r}: expected one of {sorted(table)}")
    return list(table[split])


def files(source: Path, record: str) -> list[Path]:
    partition, image_id = record.split("/", 1)
    return [Path(source) / "images" / partition / f"{image_id}.jpg",
            Path(source) / "annotations" / partition / f"{image_id}.png"]


def meta_files(variant: str, source: Path, *, list_dir=None, list_name=None, **_: object) -> list[Path]:
    paths = [list_path(variant, source, p, list_dir=list_dir, list_name=list_name) for p in PARTITIONS]
    return [p for p in paths if p.is_file()]


def read(variant: str, source: Path, record: str) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (H, W, 3) RGB and the variant's label uint8 (H, W) at full resolution."""
    image_path, label_path = files(source, record)
    image = read_image(image_path)
    fine = read_label_png(label_path)
    check_same_size(image, fine, label_path)
    return image, map_labels(fine, classes.lut(variant), 181, label_path)


def scan(variant: str, source: Path, partitions=PARTITIONS) -> list[dict]:
    """Per annotation PNG: partition, id, height, width and the share of target-class pixels."""
    table = classes.lut(variant)
    stats = []
    for partition in partitions:
        folder = Path(source) / "annotations" / partition
        if not folder.is_dir():
            raise FileNotFoundError(f"COCO-Stuff annotation folder {folder} is missing")
        for path in sorted(folder.glob("*.png")):
            fine = read_label_png(path)
            target = float((table[fine] != IGNORE).mean())
            stats.append(dict(partition=partition, id=path.stem, height=fine.shape[0], width=fine.shape[1],
                              coverage=target))
    return stats


def rule_lists(stats: list[dict], *, min_side: int = 360, min_coverage: float = 0.75) -> dict[str, list[str]]:
    """Ids kept by the curation rule (both sides >= min_side and target share >= min_coverage)."""
    out: dict[str, list[str]] = {p: [] for p in PARTITIONS}
    for s in stats:
        if min(s["height"], s["width"]) >= min_side and s["coverage"] >= min_coverage:
            out.setdefault(s["partition"], []).append(s["id"])
    return out


def rule_counts(stats: list[dict], *, min_side: int = 360, coverages=(0.5, 0.6, 0.75)) -> dict[str, dict]:
    """How many images each rule keeps, per partition: size rule alone, coverage alone, both."""
    out = {}
    for partition in sorted({s["partition"] for s in stats}):
        part = [s for s in stats if s["partition"] == partition]
        big = [s for s in part if min(s["height"], s["width"]) >= min_side]
        row = {"images": len(part), f"side>={min_side}": len(big)}
        for c in coverages:
            row[f"coverage>={c}"] = sum(s["coverage"] >= c for s in part)
            row[f"side>={min_side} and coverage>={c}"] = sum(s["coverage"] >= c for s in big)
        out[partition] = row
    return out


def write_lists(lists: dict[str, list[str]], list_dir: Path, list_name: str) -> list[Path]:
    """Write rule lists in the curated layout <list_dir>/<partition>/<list_name>.txt (atomically)."""
    from .files import write_text_atomic

    written = []
    for partition, ids in lists.items():
        path = Path(list_dir) / partition / f"{list_name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(f"{i}\n" for i in ids))
        written.append(path)
    return written


def curate(variant: str, source=None, *, min_side: int = 360, min_coverage: float = 0.75,
           coverages=(0.5, 0.6, 0.75), list_dir=None, list_name: str | None = None) -> dict[str, dict]:
    """Apply the curation rule to every annotated image; return counts per rule, optionally write lists.

    source: the COCO-Stuff folder or a data root. With list_dir, the kept ids are written in the curated
    layout (<list_dir>/<partition>/<list_name>.txt) so that load_split(..., list_dir=, list_name=) uses them.
    """
    from .paths import source_dir

    folder = source_dir("cocostuff", source)
    stats = scan(variant, folder)
    counts = rule_counts(stats, min_side=min_side, coverages=tuple(sorted({*coverages, min_coverage})))
    if list_dir is not None:
        name = list_name or f"{LIST_NAMES[variant]}_rule_side{min_side}_cov{min_coverage}"
        write_lists(rule_lists(stats, min_side=min_side, min_coverage=min_coverage), Path(list_dir), name)
    return counts
