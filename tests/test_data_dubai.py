"""Dubai-5 / Dubai-3: colour masks to ids, patches, tile split, errors; real data when present."""
import numpy as np
import pytest
from data_fixtures import DUBAI_COLOURS, SHARED, dubai_mask, write_dubai
from PIL import Image

from iicrepro.data import dubai, load_split

OPTS = dict(patch=20)  # fixture images 84x100 -> x0.5 -> 42x50 -> 2 x 2 patches of 20


@pytest.fixture()
def dubai_root(tmp_path):
    write_dubai(tmp_path)
    return tmp_path


def test_colour_maps():
    mask = np.array([[c] for c in DUBAI_COLOURS], dtype=np.uint8)  # (7, 1, 3)
    five = dubai.colours_to_ids(mask, "dubai5", "m.png")[:, 0].tolist()
    three = dubai.colours_to_ids(mask, "dubai3", "m.png")[:, 0].tolist()
    assert five == [0, 1, 2, 3, 4, 255, 255]
    assert three == [1, 0, 1, 2, 2, 255, 255]  # building, land, road, vegetation, water, unlabeled, black
    with pytest.raises(ValueError, match=r"odd\.png.*\(1, 2, 3\)"):
        dubai.colours_to_ids(np.array([[[1, 2, 3]]], dtype=np.uint8), "dubai5", "odd.png")


def test_patches_shapes_and_labels(dubai_root):
    data = load_split("dubai5", "all", root=dubai_root, **OPTS)
    assert len(data) == 4 * 2 * 4 and data.uniform and not data.mask_from_labels
    assert data.images.shape[1:] == (3, 20, 20) and data.labels.shape[1:] == (20, 20)
    assert data.ids[0] == "Tile 1/image_part_001/r0c0" and data.ids[3] == "Tile 1/image_part_001/r1c1"
    full = load_split("dubai5", "all", root=dubai_root, prescale=1.0, patch=84)
    assert len(full) == 8 and full.labels.shape[1:] == (84, 84)
    stripes = dubai.colours_to_ids(dubai_mask(84, 100), "dubai5", "x")[:, :84]
    assert np.array_equal(full.labels[0].numpy(), stripes)
    assert full.ids[2].startswith("Tile 2")  # tile 2 masks are palette PNGs: they decode the same
    assert np.array_equal(full.labels[2].numpy(), stripes)


def test_patch_side_follows_the_prescale(dubai_root, monkeypatch):
    assert (dubai.patch_side(0.5), dubai.patch_side(0.25), dubai.patch_side(0.25, 50)) == (200, 100, 50)
    with pytest.raises(ValueError, match="patch=0"):
        dubai.patch_side(0.5, 0)
    monkeypatch.setattr(dubai, "PATCH_SOURCE_PIXELS", 40)  # the fixture's images are 84x100
    half = load_split("dubai5", "all", root=dubai_root, prescale=0.5)  # 42x50 -> patches of 20
    whole = load_split("dubai5", "all", root=dubai_root, prescale=1.0)  # 84x100 -> patches of 40
    assert half.images.shape[1:] == (3, 20, 20) and whole.images.shape[1:] == (3, 40, 40)
    assert half.ids == whole.ids  # the same ground, patch by patch, at both scales
    assert load_split("dubai5", "all", root=dubai_root, prescale=1.0, patch=20).images.shape[1:] == (3, 20, 20)


def test_image_split_is_seeded_stratified_and_disjoint(dubai_root):
    train = load_split("dubai3", "train", root=dubai_root, seed=0, heldout_per_tile=1, **OPTS)
    held = load_split("dubai3", "heldout", root=dubai_root, seed=0, heldout_per_tile=1, **OPTS)
    images = lambda d: {i.rsplit("/", 1)[0] for i in d.ids}  # noqa: E731
    tiles = lambda d: {i.split("/")[0] for i in d.ids}  # noqa: E731
    assert len(images(held)) == 4 and len(images(train)) == 4 and not images(train) & images(held)
    assert tiles(held) == tiles(train) == {"Tile 1", "Tile 2", "Tile 3", "Tile 4"}  # one image of every tile
    assert load_split("dubai3", "paper_eval", root=dubai_root, seed=0, heldout_per_tile=1, **OPTS).ids == train.ids
    choices = {frozenset(images(load_split("dubai3", "heldout", root=dubai_root, seed=s, heldout_per_tile=1, **OPTS)))
               for s in range(4)}
    assert len(choices) > 1


def test_tile_split_is_seeded_and_disjoint(dubai_root):
    opts = dict(OPTS, split_by="tile", heldout_tiles=2)
    train = load_split("dubai3", "train", root=dubai_root, seed=0, **opts)
    held = load_split("dubai3", "heldout", root=dubai_root, seed=0, **opts)
    tiles = lambda d: {i.split("/")[0] for i in d.ids}  # noqa: E731
    assert len(tiles(held)) == 2 and len(tiles(train)) == 2 and not tiles(train) & tiles(held)
    assert load_split("dubai3", "heldout", root=dubai_root, seed=0, **opts).ids == held.ids
    others = {frozenset(tiles(load_split("dubai3", "heldout", root=dubai_root, seed=s, **opts))) for s in range(6)}
    assert len(others) > 1
    paper = load_split("dubai3", "train", root=dubai_root, paper_split=True, **OPTS)
    assert len(paper) == 32 and len(load_split("dubai3", "heldout", root=dubai_root, paper_split=True, **OPTS)) == 0


def test_bad_inputs_name_the_file(tmp_path):
    base = write_dubai(tmp_path, tiles=2, per_tile=1)
    bad = dubai_mask(84, 100)
    bad[0, 0] = (9, 9, 9)
    Image.fromarray(bad).save(base / "Tile 2" / "masks" / "image_part_001.png")
    with pytest.raises(ValueError, match=r"Tile 2/masks/image_part_001.png.*\(9, 9, 9\)"):
        load_split("dubai5", "all", root=tmp_path, heldout_tiles=1)
    Image.fromarray(dubai_mask(80, 100)).save(base / "Tile 2" / "masks" / "image_part_001.png")
    with pytest.raises(ValueError, match="size mismatch"):
        load_split("dubai5", "all", root=tmp_path, heldout_tiles=1)
    (base / "Tile 2" / "masks" / "image_part_001.png").unlink()
    with pytest.raises(FileNotFoundError, match="image_part_001.png"):
        load_split("dubai5", "all", root=tmp_path, heldout_tiles=1)
    with pytest.raises(ValueError, match="heldout_tiles"):
        load_split("dubai5", "train", root=tmp_path, split_by="tile", heldout_tiles=2)
    with pytest.raises(ValueError, match="heldout_per_tile"):
        load_split("dubai5", "train", root=tmp_path, heldout_per_tile=1)
    with pytest.raises(ValueError, match="unknown option"):
        load_split("dubai5", "train", root=tmp_path, tiles=2)


needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "dubai-aerial").is_dir(),
                                  reason="../shared/data missing")


@needs_shared
def test_real_dubai_counts_and_label_ranges():
    source = SHARED / "dubai-aerial" / "Semantic segmentation dataset"
    groups = dubai.groups("dubai5", source)
    assert len(groups) == 8 and sum(len(v) for v in groups.values()) == 72
    assert all(len(v) == 9 for v in groups.values())
    train, held = dubai.select(groups, "train", seed=0), dubai.select(groups, "heldout", seed=0)
    assert len(train) == 56 and len(held) == 16 and not set(train) & set(held)
    train, held = (dubai.select(groups, s, seed=0, split_by="tile") for s in ("train", "heldout"))
    assert len(train) + len(held) == 72 and not {r.split("/")[0] for r in train} & {r.split("/")[0] for r in held}
    for record in ["Tile 2/image_part_003", "Tile 4/image_part_001"]:  # small images (one palette-mode mask)
        image, label = dubai.read("dubai5", source, record)
        assert image.shape[:2] == label.shape and set(np.unique(label).tolist()) <= {0, 1, 2, 3, 4, 255}
