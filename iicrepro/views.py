"""The pair of views of IIC segmentation: x1 = the image, x2 = g(x1) (paper Sec. 3.2, Eq. 5).

g is what the authors' released code applies to the second view of the Table-4 runs: per-sample
colour jitter of the RGB channels (torchvision `ColorJitter` semantics; extra channels such as
infrared untouched), then a per-sample horizontal flip of every channel. When Sobel channels are used
(COCO-Stuff runs), they are computed *after* the flip from the greyscale of the view, in both views:
the released code flips inside the dataset (`_prepare_train`) and calls `sobel_process` on the batch
in the training loop. Computing Sobel before the flip would instead negate the dx channel of flipped
samples. `invert` maps an output of x2 back into the frame of x1 (Eq. 5: the loss compares
p1(u) with p2(g(u))).

Randomness: every random number (the four jitter factors per sample, the order of the four colour
operations, the flip decisions) is drawn from `generator` with `torch.rand`/`torch.randperm`, on the
generator's device, and handed to kornia as explicit parameters, so kornia's own sampler is never
used: a seeded generator gives the same views for the same images. With `generator=None` the global
torch RNG of the images' device is used (reproducible under `torch.manual_seed`).

Known differences from the original: it jittered 8-bit PIL images (rounding after each step) that
were in fact BGR (OpenCV loading), and drew the order of the four colour operations per image;
kornia applies one drawn order to the whole batch, so here the order is random per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.augmentation import ColorJitter

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 greyscale, as PIL's convert("L") and OpenCV's RGB2GRAY
# The released sobel_process used these as conv2d weights (cross-correlation), padding 1.
SOBEL_DX = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_DY = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


@dataclass
class Views:
    """x1, x2: (B, C', H, W) with C' = C + 2 when Sobel is on; flipped: (B,) bool, True where x2 is
    mirrored along the width."""

    x1: torch.Tensor
    x2: torch.Tensor
    flipped: torch.Tensor


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] not in (3, 4) or not images.is_floating_point():
        raise ValueError("expected images of shape (B, C, H, W), float in [0, 1], with C = 3 (RGB) or "
                         f"C = 4 (RGB + IR); got {tuple(images.shape)} {images.dtype}")


def _check_jitter(jitter) -> tuple[float, float, float, float]:
    if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
        raise ValueError("expected jitter = (brightness, contrast, saturation, hue), all >= 0, "
                         f"hue <= 0.5 (fraction of the hue circle); got {jitter}")
    return tuple(float(j) for j in jitter)


def sobel_channels(images: torch.Tensor) -> torch.Tensor:
    """(B, C >= 3, H, W) -> (B, 2, H, W): Sobel dx, dy of the ITU-R 601 greyscale of the RGB channels.

    Same kernels, orientation and zero padding as the released `sobel_process`: dx is positive where
    the image gets darker to the right, dy positive where it gets darker downwards.
    """
    luma = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
    grey = torch.einsum("bchw,c->bhw", images[:, :3], luma).unsqueeze(1)  # (B, 1, H, W)
    weight = torch.tensor((SOBEL_DX, SOBEL_DY), dtype=images.dtype, device=images.device)
    return F.conv2d(grey, weight.unsqueeze(1), padding=1)  # (B, 2, H, W)


def _draw_jitter_params(batch: int, jitter, generator, gen_device, device) -> dict:
    """torchvision ColorJitter ranges: factors uniform in [max(0, 1 - j), 1 + j], hue in [-h, h]
    (fraction of the hue circle; kornia's ColorJitter takes the same unit and multiplies by 2 pi)."""
    def uniform(lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=gen_device)
        return (lo + (hi - lo) * u).to(device)

    b, c, s, h = jitter
    return {"brightness_factor": uniform(max(0.0, 1 - b), 1 + b),
            "contrast_factor": uniform(max(0.0, 1 - c), 1 + c),
            "saturation_factor": uniform(max(0.0, 1 - s), 1 + s),
            "hue_factor": uniform(-h, h),
            "order": torch.randperm(4, generator=generator, device=gen_device).cpu(),
            "batch_prob": torch.ones(batch, dtype=torch.bool, device=device)}


def colour_jitter(images: torch.Tensor, *, jitter, generator=None) -> torch.Tensor:
    """Per-sample colour jitter of the RGB channels; channels after the third are returned bit-identical.

    jitter = (brightness, contrast, saturation, hue) with torchvision's meaning. Output clamped to [0, 1].
    """
    _check_images(images)
    jitter = _check_jitter(jitter)
    gen_device = generator.device if generator is not None else images.device
    params = _draw_jitter_params(images.shape[0], jitter, generator, gen_device, images.device)
    rgb = ColorJitter(p=1.0, same_on_batch=False)(images[:, :3], params=params).clamp(0.0, 1.0)
    return torch.cat([rgb.to(images.dtype), images[:, 3:]], dim=1)  # (B, C, H, W)


def flip_where(x: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Mirror along the width (dim -1) the samples of x (B, ..., W) where flipped (B,) is True."""
    mask = flipped.to(device=x.device, dtype=torch.bool).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, x.flip(-1), x)


def make_views(images: torch.Tensor, *, jitter, flip_p: float, sobel: bool,
               generator: torch.Generator | None = None) -> Views:
    """x1 = images (+ Sobel), x2 = flip(jitter(images)) (+ Sobel of the flipped view); see module doc.

    images: (B, C, H, W) float in [0, 1], C = 3 (RGB) or 4 (RGB + IR), on any device.
    flip_p: probability that a sample's x2 is mirrored (the released code used 0.5).
    """
    _check_images(images)
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"expected 0 <= flip_p <= 1, got {flip_p}")
    jittered = colour_jitter(images, jitter=jitter, generator=generator)  # (B, C, H, W)
    gen_device = generator.device if generator is not None else images.device
    draws = torch.rand(images.shape[0], generator=generator, device=gen_device)
    flipped = (draws < flip_p).to(images.device)  # (B,)
    x1, x2 = images, flip_where(jittered, flipped)
    if sobel:
        x1 = torch.cat([x1, sobel_channels(x1)], dim=1)  # (B, C + 2, H, W)
        x2 = torch.cat([x2, sobel_channels(x2)], dim=1)
    return Views(x1=x1, x2=x2, flipped=flipped)



def invert(outputs: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Map outputs of x2 (B, K, H, W) into the frame of x1 by un-flipping the flipped samples."""
    if outputs.dim() != 4 or flipped.shape != (outputs.shape[0],):
        raise ValueError(f"expected outputs of shape (B, K, H, W) and flipped of shape (B,); got "
                         f"{tuple(outputs.shape)} and {tuple(flipped.shape)}")
    return flip_where(outputs, flipped)  # a flip is its own inverse
