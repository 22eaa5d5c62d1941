"""Reading the compact cache that iicrepro.data.prepare writes (its layout: see that module).

A cache holds one dataset variant at one pre-scale. Its folder is <root>/<dataset> at the preset's pre-scale
and <root>/<dataset>@x<prescale> at any other (`iicrepro prepare camvid3 --prescale 0.25` ->
data/cache/camvid3@x0.25), so caches of several scales live side by side.
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SegmentationSet
from .files import to_chw
from .paths import default_cache_root
from .records import build_set, default_prescale, family_of, family_options

FORMAT = "iicrepro-cache/1"


def encode(array: np.ndarray, image_format: str, quality: int) -> bytes:
    """uint8 (H, W, C) or (H, W) -> bytes; only 3-channel images may be lossy (JPEG)."""
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if array.ndim == 3 and array.shape[2] == 3 and image_format == "jpeg":
        img.save(buf, format="JPEG", quality=quality, subsampling=0)
    elif array.ndim == 3 and array.shape[2] == 3 and image_format == "webp":
        img.save(buf, format="WEBP", lossless=True)
    else:
        img.save(buf, format="PNG", compress_level=9 if array.ndim == 2 else 6)
    return buf.getvalue()


def decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.array(img)


def cache_name(dataset: str, prescale: float | None = None) -> str:
    """Folder name of a cache: the dataset at its preset's pre-scale, else `<dataset>@x<prescale>`."""
    if prescale is None or abs(float(prescale) - default_prescale(dataset)) < 1e-9:
        return dataset
    return f"{dataset}@x{float(prescale):g}"


def cache_dir(dataset: str, out, prescale: float | None = None) -> Path:
    """The cache folder of `dataset` at `prescale`: `out` itself when it is named after it (or after the
    dataset), else out/<cache_name>. out None: the default cache root (<data root>/cache)."""
    out = Path(out) if out is not None else default_cache_root()
    return out if out.name in (dataset, cache_name(dataset, prescale)) else out / cache_name(dataset, prescale)


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def load_cached(dataset: str, split: str, cache, *, prescale: float | None = None, paper_split: bool = False,
                min_coverage: float = 0.0, max_images: int | None = None, **options) -> SegmentationSet:
    """load_split() from a cache folder written by prepare() (the dataset's folder or the cache root)."""
    folder = cache_dir(dataset, cache, prescale)
    manifest = read_manifest(folder)
    if manifest is None:  # no cache at this pre-scale: the preset's one (if any) names its own pre-scale below
        other = cache_dir(dataset, cache)
        manifest = read_manifest(other)
        folder = other if manifest is not None else folder
    if manifest is None or manifest.get("dataset") != dataset:
        raise FileNotFoundError(f"no cache of {dataset} at {folder} (run `iicrepro prepare {dataset}`)")
    if prescale is not None and abs(float(prescale) - manifest["prescale"]) > 1e-9:
        raise ValueError(f"{folder} was prepared at prescale {manifest['prescale']}, not {prescale}; "
                         f"prepare one with `iicrepro prepare {dataset} --prescale {prescale:g}`")
    options = family_options(dataset, options)
    stored = manifest["params"]["group_options"]
    clash = {k: (v, options[k]) for k, v in stored.items() if options.get(k) != v}
    if clash:
        raise ValueError(f"{folder} was prepared with options {stored}; requested {clash}")
    records = family_of(dataset).select(manifest["groups"], split, paper_split=paper_split, **options)
    if max_images is not None and not hasattr(family_of(dataset), "to_samples"):
        records = records[:max_images]
    images, labels = _decode_records(folder, manifest, records)
    info = dict(cache=str(folder), prescale=manifest["prescale"], paper_split=paper_split, options=options)
    return build_set(dataset, split, images, labels, records, options=options, prescale=manifest["prescale"],
                     min_coverage=min_coverage, max_images=max_images, info=info)


def _decode_records(folder: Path, manifest: dict, records: list[str]) -> tuple[list, list]:
    position = {r: i for i, r in enumerate(manifest["records"])}
    with np.load(folder / "records.npz") as npz:
        img_blob, img_off = npz["img_blob"], npz["img_offsets"]
        lbl_blob, lbl_off = npz["lbl_blob"], npz["lbl_offsets"]

    def one(record: str):
        i = position[record]
        image = decode(img_blob[img_off[i]:img_off[i + 1]].tobytes())
        label = decode(lbl_blob[lbl_off[i]:lbl_off[i + 1]].tobytes())
        image = image[:, :, None] if image.ndim == 2 else image
        return to_chw(image), to_chw(label[:, :, None])[0]

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(one, records))
    return [x for x, _ in pairs], [y for _, y in pairs]
