"""Potsdam-6 / Potsdam-3 from the authors' .mat layout: splits, RGB+IR, merge, unlabelled, errors."""
import numpy as np
import pytest
import scipy.io
import torch
from data_fixtures import write_potsdam

from iicrepro.data import batches, load_split


@pytest.fixture()
def potsdam_root(tmp_path):
    write_potsdam(tmp_path)
    return tmp_path


def test_splits(potsdam_root):
    sizes = {s: len(load_split("potsdam6", s, root=potsdam_root)) for s in ("train", "paper_eval", "heldout", "all")}
    assert sizes == {"train": 7, "paper_eval": 4, "heldout": 2, "all": 9}
    paper = {s: len(load_split("potsdam6", s, root=potsdam_root, paper_split=True)) for s in ("train", "paper_eval", "heldout")}
    assert paper == {"train": 9, "paper_eval": 6, "heldout": 0}
    assert len(load_split("potsdam6", "labelled_test", root=potsdam_root)) == 2


def test_rgbir_and_labels(potsdam_root):
    six = load_split("potsdam6", "paper_eval", root=potsdam_root)
    assert six.images.shape == (4, 4, 20, 20) and six.images.dtype == torch.uint8 and not six.mask_from_labels
    raw = scipy.io.loadmat(potsdam_root / "potsdam" / "imgs" / f"{six.ids[0]}.mat")["img"]
    assert torch.equal(six.images[0], torch.from_numpy(raw).permute(2, 0, 1))
    gt = np.arange(400).reshape(20, 20) % 6
    assert np.array_equal(six.labels[0].numpy(), gt)
    three = load_split("potsdam3", "paper_eval", root=potsdam_root)
    assert np.array_equal(three.labels[0].numpy(), np.array([0, 1, 2, 2, 0, 1])[gt])
    x, _ = next(batches(three, batch_size=2, crop=20, train=True))
    assert x.shape == (2, 4, 20, 20) and 0.0 <= x.min() and x.max() <= 1.0


def test_unlabelled_images_have_ignore_labels(potsdam_root):
    unl = load_split("potsdam3", "unlabelled_train", root=potsdam_root)
    assert len(unl) == 3 and bool((unl.labels == 255).all())


def test_bad_inputs_name_the_file(tmp_path):
    base = write_potsdam(tmp_path)
    first = (base / "labelled_train.txt").read_text().split()[0]
    scipy.io.savemat(base / "gt" / f"{first}.mat", {"gt": np.full((20, 20), 7, dtype=np.int32)})
    with pytest.raises(ValueError, match=f"{first}.mat.*outside the class range"):
        load_split("potsdam6", "paper_eval", root=tmp_path)
    scipy.io.savemat(base / "gt" / f"{first}.mat", {"gt": np.zeros((10, 20), dtype=np.int32)})
    with pytest.raises(ValueError, match="size mismatch"):
        load_split("potsdam6", "paper_eval", root=tmp_path)
    (base / "gt" / f"{first}.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(ValueError, match=f"{first}.mat"):
        load_split("potsdam6", "paper_eval", root=tmp_path)
    (base / "gt" / f"{first}.mat").unlink()
    with pytest.raises(FileNotFoundError, match=f"{first}.mat"):
        load_split("potsdam6", "paper_eval", root=tmp_path)
    (base / "labelled_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="labelled_test.txt"):
        load_split("potsdam6", "train", root=tmp_path)
