"""COCO-Stuff-3 / -15: the fine -> class tables, curated lists, the curation rule, pre-scale, crops."""
import numpy as np
import pytest
import torch
from data_fixtures import coco_label, write_coco
from PIL import Image

from iicrepro.config import DATASETS
from iicrepro.data import batches, cocostuff, load_split
from iicrepro.data import cocostuff_classes as cc

# The authors' fine_to_coarse_dict (xu-ji/IIC code/datasets/segmentation/util/out/fine_to_coarse_dict.pickle.txt),
# stuff part, written out independently of the hierarchy in cocostuff_classes.
AUTHORS_STUFF = dict(zip(range(91, 182), [
    17, 17, 22, 20, 20, 22, 15, 25, 16, 13, 12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13,
    22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17, 25, 16, 21, 17, 22, 16, 21, 21,
    25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23, 20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18,
    18, 18, 18, 18, 18, 26, 26, 19, 19, 24]))


def test_fine_to_coarse_matches_the_authors_table():
    assert cc.stuff_fine_to_coarse() == AUTHORS_STUFF
    assert cc.fine_id("banner") == 91 and cc.fine_id("clouds") == 105 and cc.fine_id("wood") == 181
    assert cc.COARSE15 == DATASETS["cocostuff15"].class_names


def test_stuff3_sets_equal_the_coarse_groups():
    coarse = cc.stuff_fine_to_coarse()
    for name, fines in cc.STUFF3_FINE.items():
        assert set(fines) == {f for f, c in coarse.items() if c == 12 + cc.COARSE15.index(name)}
    lut3, lut15 = cc.lut("cocostuff3"), cc.lut("cocostuff15")
    assert lut3[105] == lut3[156] == 0 and lut3[168] == 1 and lut3[148] == 2 and lut3[172] == 255
    assert lut3[0] == 255 and lut15[0] == 255 and lut15[90] == 255 and lut3[255] == lut15[255] == 255
    assert lut15[101] == 0 and lut15[181] == 12 and lut15[177] == 14 and sorted(set(lut15[91:182])) == list(range(15))


@pytest.fixture()
def coco_root(tmp_path):
    write_coco(tmp_path)
    return tmp_path


def test_curated_lists_splits_and_maps(coco_root):
    train = load_split("cocostuff3", "train", root=coco_root, prescale=1.0)
    assert len(train) == 3 and not train.uniform and train.mask_from_labels
    assert len(load_split("cocostuff3", "heldout", root=coco_root, prescale=1.0)) == 1
    assert len(load_split("cocostuff3", "train", root=coco_root, prescale=1.0, paper_split=True)) == 4
    fine = coco_label(40, 60, 1.0)
    assert np.array_equal(train.labels[0].numpy(), cc.lut("cocostuff3")[fine])
    fifteen = load_split("cocostuff15", "train", root=coco_root, prescale=1.0)
    assert np.array_equal(fifteen.labels[0].numpy(), cc.lut("cocostuff15")[fine])
    assert set(fifteen.labels[0].unique().tolist()) == {11, 10, 9, 6}  # sky, plant, ground, wall


def test_list_names_are_parameters(coco_root):
    lists = coco_root / "cocostuff" / "curated"
    for part in ("train2017", "val2017"):
        (lists / part / "Mine.txt").write_text("000000000001\n" if part == "train2017" else "")
    assert load_split("cocostuff3", "all", root=coco_root, prescale=1.0, list_name="Mine").ids == ("train2017/000000000001",)
    with pytest.raises(FileNotFoundError, match="Nope.txt"):
        load_split("cocostuff3", "all", root=coco_root, lists="curated", list_name="Nope")


def test_curation_rule_and_counts(tmp_path):
    items = {"train2017": [("a", 400, 500, 1.0), ("b", 400, 500, 0.5), ("c", 300, 500, 1.0)],
             "val2017": [("d", 380, 360, 0.8)]}
    write_coco(tmp_path, images=items, curated=False)
    source = tmp_path / "cocostuff"
    stats = cocostuff.scan("cocostuff3", source)
    counts = cocostuff.rule_counts(stats, min_side=360, coverages=(0.5, 0.75))
    assert counts["train2017"] == {"images": 3, "side>=360": 2, "coverage>=0.5": 2, "coverage>=0.75": 2,
                                   "side>=360 and coverage>=0.5": 1, "side>=360 and coverage>=0.75": 1}
    # COCO-3 counts only sky + plant + ground (3 of the 4 stuff stripes); COCO-15 counts all stuff
    assert stats[0]["coverage"] == pytest.approx(0.75)
    assert cocostuff.scan("cocostuff15", source)[0]["coverage"] == pytest.approx(1.0)
    data = load_split("cocostuff3", "all", root=tmp_path, prescale=1.0, rule_min_coverage=0.55)
    assert data.ids == ("train2017/a", "val2017/d")
    written = cocostuff.write_lists(cocostuff.rule_lists(stats, min_coverage=0.55), source / "curated", "Rule")
    assert written[0].read_text() == "a\n"
    assert load_split("cocostuff3", "all", root=tmp_path, prescale=1.0, lists="curated", list_name="Rule").ids == data.ids


def test_curate_writes_usable_lists(tmp_path):
    items = {"train2017": [("a", 400, 500, 1.0), ("b", 400, 500, 0.5)], "val2017": [("d", 380, 360, 1.0)]}
    write_coco(tmp_path, images=items, curated=False)
    counts = cocostuff.curate("cocostuff15", tmp_path, min_coverage=0.9, list_dir=tmp_path / "lists", list_name="R")
    assert counts["train2017"]["side>=360 and coverage>=0.9"] == 1 and counts["val2017"]["images"] == 1
    data = load_split("cocostuff15", "all", root=tmp_path, prescale=1.0, list_dir=tmp_path / "lists", list_name="R")
    assert data.ids == ("train2017/a", "val2017/d")


def test_prescale_pad_and_crops(coco_root):
    data = load_split("cocostuff3", "train", root=coco_root)  # preset x0.33
    assert [tuple(x.shape) for x in data.images] == [(3, 13, 20), (3, 12, 12), (3, 10, 16)]
    assert [tuple(y.shape) for y in data.labels] == [(13, 20), (12, 12), (10, 16)]
    x, y = next(batches(data, batch_size=3, crop=16, train=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (3, 3, 16, 16) and y.shape == (3, 16, 16)
    x, y = next(batches(data, batch_size=3, crop=16, train=False))
    assert bool((y[1, :2] == 255).all())  # 12 rows padded to 16: two rows of padding on top


def test_bad_inputs_name_the_file(coco_root):
    ann = coco_root / "cocostuff" / "annotations" / "train2017" / "000000000002.png"
    Image.fromarray(np.full((36, 36), 200, dtype=np.uint8)).save(ann)
    with pytest.raises(ValueError, match="000000000002.png.*outside the class range"):
        load_split("cocostuff3", "train", root=coco_root)
    Image.fromarray(np.zeros((30, 36), dtype=np.uint8)).save(ann)
    with pytest.raises(ValueError, match="size mismatch.*000000000002.png"):
        load_split("cocostuff3", "train", root=coco_root)
    Image.fromarray(coco_label(36, 36, 1.0)).save(ann)
    (coco_root / "cocostuff" / "images" / "train2017" / "000000000003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match="000000000003.jpg"):
        load_split("cocostuff15", "train", root=coco_root, max_images=3)
