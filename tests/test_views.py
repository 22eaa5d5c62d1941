"""Tests of iicrepro.views: correspondence of the two views, jitter semantics, Sobel, bad input."""

import math

import pytest
import torch
from kornia.color import rgb_to_hsv

from iicrepro.views import colour_jitter, flip_where, invert, make_views, sobel_channels


def assert_close(actual, expected, atol=1e-5, rtol=1.3e-6, msg=""):
    """torch.allclose with a message (torch.testing.assert_close imports torch.distributed: ~6 s)."""
    assert actual.shape == expected.shape, f"{msg} shape {actual.shape} != {expected.shape}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), f"{msg} max abs diff {diff}"

NO_JITTER = (0.0, 0.0, 0.0, 0.0)
COCO_JITTER = (0.4, 0.4, 0.4, 0.125)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_invert_undoes_flip_per_sample():
    outputs = torch.rand(8, 3, 5, 7, generator=gen())
    flipped = torch.tensor([True, False, False, True, True, False, True, False])
    seen = flip_where(outputs, flipped)  # what the network sees on x2
    for b in range(8):
        expected = outputs[b].flip(-1) if flipped[b] else outputs[b]
        assert torch.equal(seen[b], expected)
    assert torch.equal(invert(seen, flipped), outputs)


def test_coordinate_images_correspond_end_to_end():
    b, h, w = 16, 6, 9
    xs = torch.arange(w, dtype=torch.float32) / (w - 1)  # value encodes the x coordinate
    images = xs.expand(b, 3, h, w).clone()
    images[:, 1] = 1 - images[:, 1]
    views = make_views(images, jitter=NO_JITTER, flip_p=0.5, sobel=False, generator=gen(1))
    assert 0 < int(views.flipped.sum()) < b  # both cases occur
    assert torch.equal(invert(views.x2, views.flipped), views.x1)
    assert torch.equal(views.x1, images)


def test_marked_pixel_lands_where_expected():
    b, h, w, row, col = 12, 5, 8, 2, 1
    images = torch.zeros(b, 4, h, w)
    images[:, :, row, col] = 1.0
    views = make_views(images, jitter=NO_JITTER, flip_p=0.5, sobel=False, generator=gen(2))
    for i in range(b):
        expected_col = w - 1 - col if views.flipped[i] else col
        hot = (views.x2[i, 0] == 1).nonzero().tolist()
        assert hot == [[row, expected_col]]


@pytest.mark.parametrize("sobel", [False, True])
def test_zero_jitter_no_flip_gives_identical_views(sobel):
    images = torch.rand(3, 4, 10, 12, generator=gen())
    views = make_views(images, jitter=NO_JITTER, flip_p=0.0, sobel=sobel, generator=gen())
    assert not views.flipped.any()
    assert torch.equal(views.x1, views.x2)
    assert torch.equal(views.x1[:, :4], images)


def test_infrared_channel_bit_identical_after_jitter():
    images = torch.rand(4, 4, 10, 10, generator=gen())
    views = make_views(images, jitter=COCO_JITTER, flip_p=0.0, sobel=False, generator=gen(3))
    assert torch.equal(views.x2[:, 3], images[:, 3])
    assert not torch.equal(views.x2[:, :3], images[:, :3])


@pytest.mark.parametrize("channels", [3, 4])
def test_shapes(channels):
    images = torch.rand(5, channels, 11, 13, generator=gen())
    views = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen())
    assert views.x1.shape == views.x2.shape == (5, channels + 2, 11, 13)
    assert views.flipped.shape == (5,) and views.flipped.dtype == torch.bool
    plain = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=False, generator=gen())
    assert plain.x2.shape == (5, channels, 11, 13)


def test_sobel_of_vertical_edge():
    h, w, edge = 8, 10, 5
    images = torch.zeros(2, 3, h, w)
    images[..., edge:] = 1.0  # dark left, bright right
    grads = sobel_channels(images)
    inner = grads[:, :, 1:-1, 1:-1]  # away from the zero padding
    dx, dy = inner[:, 0], inner[:, 1]
    # released kernel [[1, 0, -1], ...] as cross-correlation: left minus right, so negative here
    assert (dx[..., edge - 2:edge] == -4).all()  # the columns edge-1 and edge of the image
    assert (dx[..., : edge - 2] == 0).all() and (dx[..., edge:] == 0).all()
    assert (dy == 0).all()


def test_sobel_is_computed_after_the_flip():
    images = torch.zeros(6, 3, 8, 10)
    images[..., 5:] = 1.0
    views = make_views(images, jitter=NO_JITTER, flip_p=0.5, sobel=True, generator=gen(4))
    assert 0 < int(views.flipped.sum()) < 6
    # x2's Sobel channels are those of the image it shows (as in the released training loop) ...
    assert torch.equal(views.x2[:, 3:], sobel_channels(views.x2[:, :3]))
    # ... so the dx channel of a flipped sample is minus the mirrored dx of x1 (the edge now goes
    # bright -> dark), while the RGB channels are plain mirrors
    back = invert(views.x2, views.flipped)
    sign = torch.where(views.flipped, -1.0, 1.0).view(-1, 1, 1)
    assert torch.equal(back[:, :3], views.x1[:, :3])
    assert torch.equal(back[:, 3, 1:-1, 1:-1], sign * views.x1[:, 3, 1:-1, 1:-1])


def test_hue_jitter_turns_like_torchvision():
    # kornia's ColorJitter takes hue in turns of the circle, like torchvision: hue=0.125 shifts
    # each sample's hue by up to 1/8 of the circle (45 degrees), not 0.125 radians
    red = torch.zeros(64, 3, 4, 4)
    red[:, 0] = 1.0
    out = colour_jitter(red, jitter=(0.0, 0.0, 0.0, 0.125), generator=gen(5))
    assert out.min() >= 0 and out.max() <= 1
    hue = rgb_to_hsv(out)[:, 0, 0, 0] / (2 * math.pi)  # turns in [0, 1)
    shift = torch.remainder(hue + 0.5, 1.0) - 0.5  # red is hue 0
    assert shift.abs().max() <= 0.125 + 1e-5
    assert shift.min() < -0.09 and shift.max() > 0.09
    # value (max channel) and saturation are untouched by a hue shift
    assert_close(out.amax(1), red.amax(1))


def test_brightness_is_a_per_sample_factor_in_torchvision_range():
    images = 0.25 + 0.45 * torch.rand(32, 3, 6, 6, generator=gen())  # * 1.4 stays < 1
    out = colour_jitter(images, jitter=(0.4, 0.0, 0.0, 0.0), generator=gen(6))
    ratio = out / images  # (B, 3, 6, 6), constant per sample
    factor = ratio.flatten(1)
    assert_close(factor, factor[:, :1].expand_as(factor))
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6
    assert factor.std() > 0.1  # drawn per sample, not once per batch


def test_strong_jitter_stays_in_unit_range():
    images = torch.rand(8, 3, 9, 9, generator=gen())
    out = colour_jitter(images, jitter=(0.9, 0.9, 0.9, 0.5), generator=gen(7))
    assert out.min() >= 0 and out.max() <= 1
    assert out.shape == images.shape


def test_generator_makes_views_reproducible():
    images = torch.rand(4, 3, 8, 8, generator=gen())
    first = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen(9))
    again = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen(9))
    other = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen(10))
    assert torch.equal(first.x2, again.x2) and torch.equal(first.flipped, again.flipped)
    assert not torch.equal(first.x2, other.x2)


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 2, 8, 8), (2, 5, 8, 8), (1, 2, 3, 8, 8)])
def test_bad_images(shape):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        make_views(torch.rand(shape), jitter=NO_JITTER, flip_p=0.5, sobel=False)


def test_bad_arguments():
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        make_views((images * 255).to(torch.uint8), jitter=NO_JITTER, flip_p=0.5, sobel=False)
    with pytest.raises(ValueError, match="jitter"):
        make_views(images, jitter=(0.1, 0.1, 0.1), flip_p=0.5, sobel=False)
    with pytest.raises(ValueError, match="hue"):
        make_views(images, jitter=(0.1, 0.1, 0.1, 0.7), flip_p=0.5, sobel=False)
    with pytest.raises(ValueError, match="flip_p"):
        make_views(images, jitter=NO_JITTER, flip_p=1.5, sobel=False)
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        invert(images[0], torch.zeros(2, dtype=torch.bool))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_images_with_cpu_generator_match_cpu():
    images = torch.rand(4, 4, 16, 16, generator=gen())
    cpu = make_views(images, jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen(11))
    cuda = make_views(images.cuda(), jitter=COCO_JITTER, flip_p=0.5, sobel=True, generator=gen(11))
    assert cuda.x2.device.type == "cuda" and cuda.flipped.device.type == "cuda"
    assert torch.equal(cuda.flipped.cpu(), cpu.flipped)
    assert_close(cuda.x2.cpu(), cpu.x2, atol=1e-4, rtol=0)
