"""CamVid-3 / CamVid-11: class maps, splits, pre-scale, coverage filter, errors; real data when present."""
import numpy as np
import pytest
import torch
from data_fixtures import SHARED, camvid_label, write_camvid
from PIL import Image

from iicrepro.data import camvid, coverage_counts, load_split


@pytest.fixture()
def camvid_root(tmp_path):
    write_camvid(tmp_path)
    return tmp_path


def test_splits_and_counts(camvid_root):
    sizes = {s: len(load_split("camvid11", s, root=camvid_root, prescale=1.0))
             for s in ("train", "paper_eval", "heldout", "all", "raw_train", "raw_val", "raw_test")}
    assert sizes == {"train": 5, "paper_eval": 5, "heldout": 2, "all": 7, "raw_train": 3, "raw_val": 2, "raw_test": 2}
    paper = load_split("camvid11", "train", root=camvid_root, prescale=1.0, paper_split=True)
    assert len(paper) == 7 and len(load_split("camvid11", "heldout", root=camvid_root, paper_split=True)) == 0
    data = load_split("camvid11", "train", root=camvid_root, prescale=1.0)
    assert data.ids[0] == "train/train_000.png" and data.mask_from_labels


def test_class_maps(camvid_root):
    raw = camvid_label(24, 32, shift=0)
    eleven = load_split("camvid11", "raw_train", root=camvid_root, prescale=1.0)
    three = load_split("camvid3", "raw_train", root=camvid_root, prescale=1.0)
    assert eleven.images.dtype == torch.uint8 and eleven.images.shape == (3, 3, 24, 32)
    y11, y3 = eleven.labels[0].numpy(), three.labels[0].numpy()
    assert np.array_equal(y11, np.where(raw == 11, 255, raw))
    expected3 = np.full_like(raw, 255)
    expected3[raw == 0], expected3[raw == 5], expected3[raw == 3], expected3[raw == 4] = 0, 1, 2, 2
    assert np.array_equal(y3, expected3)
    assert three.class_names == ("sky", "plant", "ground")


def test_prescale_is_nearest_for_labels(camvid_root):
    half = load_split("camvid3", "raw_val", root=camvid_root)  # preset: x0.5
    assert half.images.shape == (2, 3, 12, 16) and half.labels.shape == (2, 12, 16)
    full = load_split("camvid3", "raw_val", root=camvid_root, prescale=1.0)
    assert set(half.labels.unique().tolist()) <= set(full.labels.unique().tolist())


def test_coverage_threshold(camvid_root):
    counts = coverage_counts("camvid3", (0.0, 0.5, 0.99), root=camvid_root, prescale=1.0)
    assert counts[0.0] == 7 and counts[0.99] == 0
    share = load_split("camvid3", "all", root=camvid_root, prescale=1.0).coverage()
    assert counts[0.5] == int((share >= 0.5).sum())
    kept = load_split("camvid3", "all", root=camvid_root, prescale=1.0, min_coverage=0.99)
    assert len(kept) == 0


def test_bad_inputs_name_the_file(tmp_path):
    base = write_camvid(tmp_path)
    with pytest.raises(FileNotFoundError, match="CamVid"):
        load_split("camvid3", "train", root=tmp_path / "nowhere")
    (base / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_split("camvid3", "train", root=tmp_path)
    base = write_camvid(tmp_path / "b")
    Image.fromarray(np.full((24, 32), 12, dtype=np.uint8)).save(base / "testannot" / "test_001.png")
    with pytest.raises(ValueError, match="test_001.png.*outside the class range"):
        load_split("camvid11", "heldout", root=tmp_path / "b")
    Image.fromarray(np.zeros((20, 32), dtype=np.uint8)).save(base / "testannot" / "test_001.png")
    with pytest.raises(ValueError, match="size mismatch.*test_001.png"):
        load_split("camvid11", "heldout", root=tmp_path / "b")
    (base / "test" / "test_000.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="test_000.png"):
        load_split("camvid11", "heldout", root=tmp_path / "b")
    with pytest.raises(ValueError, match="unknown CamVid split"):
        load_split("camvid11", "validation", root=tmp_path / "b")


needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "camvid").is_dir(), reason="../shared/data missing")


@needs_shared
def test_real_camvid_counts_and_label_ranges():
    source = SHARED / "camvid" / "CamVid"
    groups = camvid.groups("camvid11", source)
    assert {k: len(v) for k, v in groups.items()} == {"raw_train": 367, "raw_val": 101, "raw_test": 233}
    assert len(camvid.select(groups, "train")) == 468 and len(camvid.select(groups, "heldout")) == 233
    for record in groups["raw_train"][::120] + groups["raw_test"][::100]:  # a few frames, quick
        image, label = camvid.read("camvid11", source, record)
        assert image.shape == (360, 480, 3) and label.shape == (360, 480)
        assert set(np.unique(label).tolist()) <= set(range(11)) | {255}


@needs_shared
def test_real_camvid_loads_a_few_frames():
    data = load_split("camvid3", "heldout", root=SHARED, max_images=4)
    assert data.images.shape == (4, 3, 180, 240) and data.labels.max() == 255
    assert set(data.labels.unique().tolist()) <= {0, 1, 2, 255}


def test_run_config_paper_split_and_min_coverage_reach_both_loaders(camvid_root):
    """RunConfig.paper_split / min_coverage are honoured by the notebooks' loader and by fit()'s own."""
    from iicrepro import experiment, train
    from iicrepro.config import make_config

    base = dict(preset="camvid3", data_root=str(camvid_root), prescale=1.0, batch_size=2)
    for load in (lambda c: experiment.load_data(c, cache=None),
                 lambda c: train._datasets(c, None, None)):
        train_set, evals = load(make_config(**base))
        assert (len(train_set), {k: len(v) for k, v in evals.items()}) == (5, {"paper_eval": 5, "heldout": 2})
        train_set, evals = load(make_config(**base, paper_split=True))  # transductive: no held-out split
        assert (len(train_set), {k: len(v) for k, v in evals.items()}) == (7, {"paper_eval": 7})
    blank = np.full((24, 32), 1, dtype=np.uint8)  # all "building": nothing counts in CamVid-3
    Image.fromarray(blank).save(camvid_root / "camvid" / "CamVid" / "testannot" / "test_001.png")
    for load in (lambda c: experiment.load_data(c, cache=None),
                 lambda c: train._datasets(c, None, None)):
        train_set, evals = load(make_config(**base, min_coverage=0.3))  # drops that frame from "heldout"
        assert (len(train_set), {k: len(v) for k, v in evals.items()}) == (5, {"paper_eval": 5, "heldout": 1})
    with pytest.raises(ValueError, match="min_coverage"):
        make_config(**base, min_coverage=1.5)
