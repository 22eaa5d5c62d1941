"""prepare(): a compact cache of one dataset variant at working resolution, and load_cached() to read it.

Cache folder <out>/<name>/ (written under a temporary name, then renamed; idempotent):
  manifest.json    dataset, pre-scale, options, records (source images, pre-scaled, before patching),
                   groups (raw splits), image shapes, encoding, fingerprints of the sources
  records.npz      img_blob/img_offsets and lbl_blob/lbl_offsets: every record encoded on its own
                   (3-channel images JPEG q95 4:4:4 by default, or lossless PNG/WebP; 4-channel RGB+IR
                   lossless PNG; labels lossless grey PNG), concatenated into one uint8 array each
  sources.sha256   sha256 of every source file read, in `sha256sum` format relative to the source folder
Splits are chosen at load time from the stored groups, so one cache serves every split and option.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config import DATASETS
from .cache import FORMAT, cache_dir, encode, read_manifest
from .files import parse_sha256, read_sha256_list, replace_dir, sha256_file
from .paths import source_dir
from .records import default_prescale, family_of, family_options, read_records

IMAGE_FORMATS = ("jpeg", "png", "webp")


def _pack(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _source_files(dataset: str, source: Path, records: list[str], options: dict) -> list[Path]:
    family = family_of(dataset)
    paths = list(family.meta_files(dataset, source, **options))
    for record in records:
        paths.extend(family.files(source, record))
    return paths


def _stat_fingerprint(source: Path, paths: list[Path]) -> str:
    """Cheap fingerprint of the sources (relative names, sizes, modification times)."""
    digest = hashlib.sha256()
    for p in paths:
        st = p.stat()
        digest.update(f"{p.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _hash_sources(source: Path, paths: list[Path]) -> str:
    """sha256sum-style listing of the source files, relative to the source folder."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(sha256_file, paths))
    return "".join(f"{d}  {p.relative_to(source).as_posix()}\n" for d, p in zip(digests, paths))


def verify_against_listing(source: Path, listing: str) -> dict | None:
    """Compare with a published listing next to the source (e.g. ../shared/data/camvid.sha256).

    Looks for <folder>.sha256 beside the source folder or its parent; a mismatch raises ValueError.
    """
    ours = parse_sha256(listing)
    for base in (source, source.parent):
        published = base.parent / f"{base.name}.sha256"
        if not published.is_file():
            continue
        prefix = source.relative_to(base).as_posix()
        expected = read_sha256_list(published)
        checked = 0
        for name, digest in ours.items():
            key = f"{prefix}/{name}" if prefix != "." else name
            if key in expected:
                if expected[key] != digest:
                    raise ValueError(f"{source / name}: sha256 {digest} differs from {published} ({expected[key]})")
                checked += 1
        return {"listing": published.name, "files_checked": checked}
    return None


def prepare(name: str, src=None, out=None, *, prescale: float | None = None, image_format: str = "jpeg",
            quality: int = 95, force: bool = False, progress: bool = True, **options) -> Path:
    """Write (or keep, when up to date) the cache of dataset `name` and return its folder.

    src: the dataset folder or a data root (default $IICREPRO_DATA, else ./data); out: cache root or the
    dataset's cache folder (default <data root>/cache). Up to date = same parameters and same sources
    (file sizes and times unchanged, or else identical sha256). Written to a temporary folder, renamed.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format={image_format!r}: expected one of {IMAGE_FORMATS}")
    family, options = family_of(name), family_options(name, options)
    source = source_dir(DATASETS[name].family, src)
    prescale = default_prescale(name) if prescale is None else float(prescale)
    final = cache_dir(name, out, prescale)
    groups = family.groups(name, source, **options)
    records = family.select(groups, "all", **options)
    paths = _source_files(name, source, records, options)
    params = dict(format=FORMAT, dataset=name, prescale=prescale, image_format=image_format, quality=quality,
                  group_options={k: v for k, v in options.items()
                                 if k not in getattr(family, "LOAD_TIME_OPTIONS", ())})
    stat = _stat_fingerprint(source, paths)
    old = read_manifest(final)
    if not force and old is not None and old.get("params") == params and old.get("source_stat") == stat:
        return final
    listing = _hash_sources(source, paths)
    if not force and old is not None and old.get("params") == params and old.get("sources_sha256") == _sha(listing):
        return final
    verified = verify_against_listing(source, listing)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write(tmp, name, source, records, groups, params, prescale, image_format, quality, progress)
        (tmp / "sources.sha256").write_text(listing)
        _finish_manifest(tmp, stat=stat, listing=listing, verified=verified, source=source)
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write(tmp: Path, name: str, source: Path, records: list[str], groups: dict, params: dict,
           prescale: float, image_format: str, quality: int, progress: bool) -> None:
    """Read every record, encode it, and write records.npz plus a first manifest into `tmp`."""
    images, labels = read_records(name, source, records, prescale=prescale, progress=progress)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        img_blobs = list(pool.map(lambda x: encode(x.permute(1, 2, 0).numpy(), image_format, quality), images))
        lbl_blobs = list(pool.map(lambda y: encode(y.numpy(), "png", 0), labels))
    img_blob, img_off = _pack(img_blobs)
    lbl_blob, lbl_off = _pack(lbl_blobs)
    np.savez(tmp / "records.npz", img_blob=img_blob, img_offsets=img_off, lbl_blob=lbl_blob, lbl_offsets=lbl_off)
    manifest = dict(params=params, dataset=name, family=DATASETS[name].family, prescale=prescale,
                    class_names=list(DATASETS[name].class_names), records=records, groups=groups,
                    shapes=[list(x.shape) for x in images], bytes_images=int(img_off[-1]),
                    bytes_labels=int(lbl_off[-1]), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _finish_manifest(tmp: Path, *, stat: str, listing: str, verified: dict | None, source: Path) -> None:
    manifest = json.loads((tmp / "manifest.json").read_text())
    manifest.update(source=str(source), source_stat=stat, sources_sha256=_sha(listing),
                    source_files=listing.count("\n"), verified_against=verified)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
