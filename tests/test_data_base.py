"""SegmentationSet and batches(): shapes, dtypes, shared random crop, padding, centre crop, determinism."""
import os

import pytest
import torch

from iicrepro.data import SegmentationSet, batches, data_root, make_set
from iicrepro.data.base import filter_coverage


def position_set(n=6, h=10, w=12, channels=3):
    """Labels hold y * w + x (+ n) so any crop reveals where it came from; channel 0 of the image = label."""
    grid = (torch.arange(h * w).reshape(h, w) % 250).to(torch.uint8)
    labels = torch.stack([grid] * n)
    images = torch.stack([labels] * channels, dim=1).clone()
    images[:, 1] = torch.arange(n, dtype=torch.uint8)[:, None, None]  # channel 1 = sample index
    return make_set("camvid3", "train", list(images), list(labels), [f"s{i}" for i in range(n)],
                    class_names=("a", "b", "c"), mask_from_labels=True)


def test_make_set_stacks_uniform_and_lists_otherwise():
    data = position_set()
    assert data.uniform and data.images.shape == (6, 3, 10, 12) and data.labels.shape == (6, 10, 12)
    mixed = make_set("camvid3", "x", [torch.zeros(3, 4, 5, dtype=torch.uint8), torch.zeros(3, 6, 5, dtype=torch.uint8)],
                     [torch.zeros(4, 5, dtype=torch.uint8), torch.zeros(6, 5, dtype=torch.uint8)], ["a", "b"],
                     class_names=("a",), mask_from_labels=True)
    assert not mixed.uniform and len(mixed) == 2 and mixed.image_channels == 3


def test_set_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected uint8 images"):
        SegmentationSet("x", "train", torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.uint8),
                        ("a",), ("0", "1"))
    with pytest.raises(ValueError, match="labels"):
        SegmentationSet("x", "train", torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
                        torch.zeros(3, 4, 4, dtype=torch.uint8), ("a",), ("0", "1"))


def test_train_batches_shapes_dtypes_and_shared_crop():
    data = position_set()
    gen = torch.Generator().manual_seed(0)
    out = list(batches(data, batch_size=4, crop=8, train=True, generator=gen))
    assert [x.shape[0] for x, _ in out] == [4, 2]
    for x, y in out:
        assert x.dtype == torch.float32 and y.dtype == torch.long and x.shape[1:] == (3, 8, 8)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert torch.equal((x[:, 0] * 255).round().long(), y)  # image and label cropped at the same place
        # each crop is a contiguous window: rows differ by w, columns by 1
        assert torch.all(y[:, 1:, :] - y[:, :-1, :] == 12) and torch.all(y[:, :, 1:] - y[:, :, :-1] == 1)
    seen = sorted(int(v) for x, _ in out for v in (x[:, 1, 0, 0] * 255).round())
    assert seen == list(range(6))  # every sample once per epoch


def test_random_crops_vary_and_are_seeded():
    data = position_set(n=32)
    first = lambda seed: next(batches(data, batch_size=32, crop=8, train=True,  # noqa: E731
                                      generator=torch.Generator().manual_seed(seed)))
    a, b, c = first(1), first(1), first(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    corners = a[1][:, 0, 0]
    assert len(set(corners.tolist())) > 3  # different offsets per sample


def test_eval_centre_crop_and_order():
    data = position_set()
    x, y = next(batches(data, batch_size=6, crop=8, train=False))
    top, left = 10 // 2 - 4, 12 // 2 - 4
    assert torch.all(y[:, 0, 0] == top * 12 + left)
    assert torch.equal((x[:, 1, 0, 0] * 255).round().long(), torch.arange(6))


def test_pad_when_smaller_than_crop():
    data = position_set(h=6, w=5)
    x, y = next(batches(data, batch_size=2, crop=8, train=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (2, 3, 8, 8)
    assert (y == 255).sum(dim=(1, 2)).tolist() == [64 - 30] * 2
    top, left = 8 // 2 - 6 // 2, 8 // 2 - 5 // 2  # centred as the original pad_if_too_small
    assert int(y[0, top, left]) == 0 and torch.all(x[0, :, 0, 0] == 0)


def test_drop_last_and_list_sets():
    data = position_set(n=10)
    assert len(list(batches(data, batch_size=4, crop=8, train=True, drop_last=True))) == 2
    assert len(list(batches(data, batch_size=4, crop=8, train=False))) == 3
    sizes = [(10, 12), (14, 9), (7, 7)]
    images = [torch.full((3, h, w), 7, dtype=torch.uint8) for h, w in sizes]
    labels = [torch.ones(h, w, dtype=torch.uint8) for h, w in sizes]
    mixed = make_set("camvid3", "x", images, labels, ["a", "b", "c"], class_names=("a", "b"), mask_from_labels=True)
    x, y = next(batches(mixed, batch_size=3, crop=8, train=True, shuffle=False,
                        generator=torch.Generator().manual_seed(0)))
    assert x.shape == (3, 3, 8, 8) and y.shape == (3, 8, 8)
    assert (y[2] == 255).sum() == 64 - 49


def test_subset_coverage_and_shares():
    data = position_set(n=10)
    half = data.subset(0.5, seed=3)
    assert len(half) == 5 and list(half.ids) == sorted(half.ids, key=lambda s: int(s[1:]))
    assert half.ids == data.subset(0.5, seed=3).ids
    with pytest.raises(ValueError):
        data.subset(0.0)
    labels = data.labels.clone()
    labels[:5, :5] = 255  # half the samples lose rows 0..4 of 10
    masked = SegmentationSet("x", "train", data.images, labels, ("a",), data.ids)
    assert torch.allclose(masked.coverage()[:5], torch.tensor(0.5))
    assert len(filter_coverage(masked, 0.75)) == 5 and len(filter_coverage(masked, 0.0)) == 10
    shares = masked.pixel_shares()
    assert shares["ignored"] == pytest.approx(0.25) and shares["a"] == pytest.approx(5 / 1200)


def test_to_device_keeps_batches_on_device():
    data = position_set().to("cpu")
    x, y = next(batches(data, batch_size=2, crop=8, train=True, device="cpu"))
    assert x.device.type == "cpu" and y.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_resident_crops_match_cpu():
    data = position_set(n=16)
    cpu = list(batches(data, batch_size=8, crop=8, train=True, generator=torch.Generator().manual_seed(5)))
    gpu = list(batches(data.to("cuda"), batch_size=8, crop=8, train=True, generator=torch.Generator().manual_seed(5)))
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("IICREPRO_DATA", raising=False)
    assert str(data_root()) == "data"
    monkeypatch.setenv("IICREPRO_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert str(data_root("elsewhere")) == "elsewhere"
    assert os.environ["IICREPRO_DATA"] == str(tmp_path)
