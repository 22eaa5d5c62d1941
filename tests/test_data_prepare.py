"""prepare(): cache contents, equality with the source, idempotence, checksums, nothing half-written."""
import json
import os

import pytest
import torch
from data_fixtures import write_camvid, write_coco, write_dubai, write_potsdam
from PIL import Image

from iicrepro.data import cache_dir, cache_name, load_split, prepare
from iicrepro.data.files import sha256_file


def test_camvid_cache_equals_source(tmp_path):
    write_camvid(tmp_path / "src")
    folder = prepare("camvid3", tmp_path / "src", tmp_path / "cache", image_format="png", progress=False)
    assert folder == tmp_path / "cache" / "camvid3" and folder == cache_dir("camvid3", tmp_path / "cache" / "camvid3")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "records.npz", "sources.sha256"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["prescale"] == 0.5 and len(manifest["records"]) == 7 and manifest["source_files"] == 17
    for split in ("train", "heldout", "raw_val"):
        cached = load_split("camvid3", split, cache=tmp_path / "cache")
        source = load_split("camvid3", split, root=tmp_path / "src")
        assert cached.ids == source.ids and torch.equal(cached.labels, source.labels)
        assert torch.equal(cached.images, source.images)  # lossless PNG
    assert len(load_split("camvid3", "all", cache=folder, min_coverage=0.99)) == 0


def test_jpeg_cache_is_close(tmp_path):
    write_camvid(tmp_path / "src", size=(48, 64))
    prepare("camvid11", tmp_path / "src", tmp_path / "cache", progress=False)
    cached = load_split("camvid11", "all", cache=tmp_path / "cache")
    source = load_split("camvid11", "all", root=tmp_path / "src")
    assert torch.equal(cached.labels, source.labels)
    assert (cached.images.float() - source.images.float()).abs().mean() < 12  # JPEG q95 of pure noise


def test_idempotent_and_rebuilt_when_sources_change(tmp_path):
    base = write_camvid(tmp_path / "src")
    folder = prepare("camvid11", tmp_path / "src", tmp_path / "cache", progress=False)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert prepare("camvid11", tmp_path / "src", tmp_path / "cache", progress=False) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    os.utime(base / "train.txt", ns=(1, 1))  # times change, content does not: kept after hashing
    prepare("camvid11", tmp_path / "src", tmp_path / "cache", progress=False)
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    Image.fromarray(torch.zeros(24, 32, dtype=torch.uint8).numpy()).save(base / "valannot" / "val_000.png")
    prepare("camvid11", tmp_path / "src", tmp_path / "cache", progress=False)
    assert (folder / "manifest.json").stat().st_mtime_ns != stamp
    assert bool((load_split("camvid11", "raw_val", cache=folder).labels[0] == 0).all())
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_failure_leaves_nothing_half_written(tmp_path):
    base = write_camvid(tmp_path / "src")
    (base / "test" / "test_001.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="test_001.png"):
        prepare("camvid3", tmp_path / "src", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_published_checksums_are_compared(tmp_path):
    base = write_camvid(tmp_path / "src")
    listing = tmp_path / "src" / "camvid.sha256"
    listing.write_text(f"{sha256_file(base / 'train.txt')}  CamVid/train.txt\n")
    folder = prepare("camvid3", tmp_path / "src", tmp_path / "cache", progress=False)
    verified = json.loads((folder / "manifest.json").read_text())["verified_against"]
    assert verified == {"listing": "camvid.sha256", "files_checked": 1}
    listing.write_text(f"{'0' * 64}  CamVid/val.txt\n")
    with pytest.raises(ValueError, match="val.txt.*differs"):
        prepare("camvid3", tmp_path / "src", tmp_path / "cache", force=True, progress=False)


def test_dubai_cache_patches_and_split_options(tmp_path):
    write_dubai(tmp_path / "src")
    prepare("dubai3", tmp_path / "src", tmp_path / "cache", image_format="png", progress=False)
    for seed in (0, 1):
        opts = dict(seed=seed, patch=20, heldout_per_tile=1)
        cached = load_split("dubai3", "heldout", cache=tmp_path / "cache", **opts)
        source = load_split("dubai3", "heldout", root=tmp_path / "src", **opts)
        assert cached.ids == source.ids and torch.equal(cached.labels, source.labels)
        assert torch.equal(cached.images, source.images)
    with pytest.raises(ValueError, match="prescale 0.5, not 1.0"):
        load_split("dubai3", "train", cache=tmp_path / "cache", prescale=1.0)
    with pytest.raises(FileNotFoundError, match="no cache of dubai5"):
        load_split("dubai5", "train", cache=tmp_path / "cache")


def test_potsdam_rgbir_and_coco_lists(tmp_path):
    write_potsdam(tmp_path / "src")
    prepare("potsdam6", tmp_path / "src", tmp_path / "cache", progress=False)
    cached = load_split("potsdam6", "all", cache=tmp_path / "cache")
    source = load_split("potsdam6", "all", root=tmp_path / "src")
    assert torch.equal(cached.images, source.images) and torch.equal(cached.labels, source.labels)  # 4 channels: PNG
    write_coco(tmp_path / "src")
    prepare("cocostuff15", tmp_path / "src", tmp_path / "cache", image_format="png", progress=False)
    cached = load_split("cocostuff15", "train", cache=tmp_path / "cache")
    assert not cached.uniform and [tuple(y.shape) for y in cached.labels] == [(13, 20), (12, 12), (10, 16)]
    with pytest.raises(ValueError, match="prepared with options"):
        load_split("cocostuff15", "train", cache=tmp_path / "cache", list_name="Other")


def test_caches_of_two_prescales_side_by_side(tmp_path):
    write_dubai(tmp_path / "src")
    default = prepare("dubai3", tmp_path / "src", tmp_path / "cache", image_format="png", progress=False)
    half = prepare("dubai3", tmp_path / "src", tmp_path / "cache", prescale=0.25, image_format="png", progress=False)
    assert default.name == "dubai3" and half.name == "dubai3@x0.25"
    assert cache_name("dubai3", 0.5) == "dubai3" and cache_name("dubai3", 0.25) == "dubai3@x0.25"
    cached = load_split("dubai3", "train", cache=tmp_path / "cache", prescale=0.25, patch=20, heldout_per_tile=1)
    source = load_split("dubai3", "train", root=tmp_path / "src", prescale=0.25, patch=20, heldout_per_tile=1)
    assert cached.ids == source.ids and torch.equal(cached.images, source.images)
    with pytest.raises(ValueError, match=r"iicrepro prepare dubai3 --prescale 0.1"):
        load_split("dubai3", "train", cache=tmp_path / "cache", prescale=0.1, heldout_per_tile=1)


def test_cli_prepare_takes_a_prescale(tmp_path):
    from iicrepro.cli import main

    write_dubai(tmp_path / "src")
    assert main(["prepare", "dubai3", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "cache"),
                 "--prescale", "0.25"]) == 0
    assert (tmp_path / "cache" / "dubai3@x0.25" / "manifest.json").is_file()


def test_data_modules_import_one_way():
    """records <- cache <- load, records/cache <- prepare: no module of iicrepro.data imports a later one."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "iicrepro" / "data"
    order = ["records", "cache", "load", "splits", "prepare"]
    for position, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert not imported & set(order[position:]), f"iicrepro/data/{name}.py imports {imported & set(order)}"
