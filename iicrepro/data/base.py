"""A labelled image set held in memory, and cropped batches drawn from it.

Facts section 3: a training crop is taken once per image and shared by both views (the views are made
from the crop), images smaller than the crop are zero-padded (centred, as the original pad_if_too_small),
evaluation uses a centre crop. Values are scaled to [0, 1]; no mean/std normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from .files import IGNORE

@dataclass(frozen=True)
class SegmentationSet:
    """Images and label maps of one split of one dataset variant.

    images: uint8 (N, C, H, W) when all images share a size, else a list of uint8 (C, H, W).
    labels: uint8 (N, H, W) or a list of (H, W); classes 0..num_classes-1, 255 = ignore.
    mask_from_labels: True when the loss mask is `labels != 255` (COCO-Stuff and CamVid: other pixels are
      masked out of the loss, facts section 3); False when every pixel counts (Potsdam, Dubai: masks all ones).
    """

    name: str  # dataset variant, a key of iicrepro.config.DATASETS
    split: str  # "train", "paper_eval", "heldout", or a raw group name
    images: torch.Tensor | list
    labels: torch.Tensor | list
    class_names: tuple[str, ...]
    ids: tuple[str, ...]
    mask_from_labels: bool = True
    info: dict = field(default_factory=dict)  # provenance: prescale, options, source

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.labels) != n or len(self.ids) != n:
            raise ValueError(f"{self.name}/{self.split}: {n} images, {len(self.labels)} labels, {len(self.ids)} ids")
        if self.uniform and n and (self.images.dtype != torch.uint8 or self.images.dim() != 4
                                   or self.labels.shape != (n, *self.images.shape[2:])):
            raise ValueError(f"{self.name}/{self.split}: expected uint8 images (N, C, H, W) and labels (N, H, W), "
                             f"got {tuple(self.images.shape)} {self.images.dtype} and {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def uniform(self) -> bool:
        """True when images are one (N, C, H, W) tensor (crops are then done batched, on any device)."""
        return isinstance(self.images, torch.Tensor)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_channels(self) -> int:
        return int(self.images[0].shape[-3]) if len(self) else 0

    def select(self, indices: Sequence[int]) -> "SegmentationSet":
        """A new set holding the samples at `indices` (in that order)."""
        idx = [int(i) for i in indices]
        if self.uniform:
            index = torch.tensor(idx, dtype=torch.long, device=self.images.device)
            images, labels = self.images[index], self.labels[index]
        else:
            images, labels = [self.images[i] for i in idx], [self.labels[i] for i in idx]
        return replace(self, images=images, labels=labels, ids=tuple(self.ids[i] for i in idx))

    def subset(self, fraction: float, seed: int = 0) -> "SegmentationSet":
        """A seeded random `fraction` of the samples, original order kept (dataset-size ablation)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"subset: fraction={fraction}, expected in (0, 1]")
        count = max(1, int(round(fraction * len(self))))
        gen = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(self), generator=gen)[:count].sort().values
        return self.select(chosen.tolist())

    def to(self, device: torch.device | str) -> "SegmentationSet":
        """Move the images and labels (uint8) to `device`, e.g. to keep a whole set in GPU memory."""
        if self.uniform:
            return replace(self, images=self.images.to(device), labels=self.labels.to(device))
        return replace(self, images=[x.to(device) for x in self.images], labels=[y.to(device) for y in self.labels])

    def coverage(self) -> torch.Tensor:
        """Fraction of labelled (not 255) pixels per sample, float (N,)."""
        if self.uniform:
            return (self.labels != IGNORE).float().mean(dim=(1, 2)).cpu()
        return torch.tensor([float((y != IGNORE).float().mean()) for y in self.labels])

    def pixel_shares(self) -> dict[str, float]:
        """Share of each class among all pixels (and of ignored pixels, key "ignored")."""
        counts = torch.zeros(256, dtype=torch.long)
        for y in (self.labels if not self.uniform else [self.labels]):
            counts += torch.bincount(y.flatten().long().cpu(), minlength=256)
        total = max(int(counts.sum()), 1)
        shares = {name: int(counts[i]) / total for i, name in enumerate(self.class_names)}
        shares["ignored"] = int(counts[IGNORE]) / total
        return shares


def make_set(name: str, split: str, images: list, labels: list, ids: Sequence[str], *,
             class_names: tuple[str, ...], mask_from_labels: bool, info: dict | None = None,
             channels: int = 3) -> SegmentationSet:
    """Build a SegmentationSet from per-sample (C, H, W) / (H, W) uint8 tensors; stacked when sizes agree."""
    if images and all(x.shape == images[0].shape for x in images):
        images_out, labels_out = torch.stack(images), torch.stack(labels)
    elif not images:
        images_out = torch.zeros((0, channels, 1, 1), dtype=torch.uint8)
        labels_out = torch.zeros((0, 1, 1), dtype=torch.uint8)
    else:
        images_out, labels_out = list(images), list(labels)
    return SegmentationSet(name, split, images_out, labels_out, tuple(class_names), tuple(ids),
                           mask_from_labels, dict(info or {}))


def filter_coverage(data: SegmentationSet, min_coverage: float) -> SegmentationSet:
    """Keep samples whose labelled share is >= min_coverage (COCO's 75% rule, as a parameter)."""
    if min_coverage <= 0:
        return data
    keep = (data.coverage() >= min_coverage).nonzero().flatten().tolist()
    return data.select(keep)


def crop_offsets(height: int, width: int, crop: int, count: int, *, train: bool,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners (count,) of crops inside an image already padded to at least crop x crop.

    Train: uniform over all positions (the original's random centre in [sz/2, h - sz/2]).
    Eval: the original's centre crop, start = h // 2 - crop // 2.
    """
    if train:
        oy = (torch.rand(count, generator=generator) * (height - crop + 1)).long().clamp_(max=height - crop)
        ox = (torch.rand(count, generator=generator) * (width - crop + 1)).long().clamp_(max=width - crop)
        return oy, ox
    oy = torch.full((count,), height // 2 - crop // 2, dtype=torch.long)
    ox = torch.full((count,), width // 2 - crop // 2, dtype=torch.long)
    return oy, ox


def pad_to(images: torch.Tensor, labels: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre zero-pad (labels with 255) so that H, W >= crop. images (..., C, H, W), labels (..., H, W)."""
    h, w = labels.shape[-2:]
    new_h, new_w = max(h, crop), max(w, crop)
    if (new_h, new_w) == (h, w):
        return images, labels
    top, left = new_h // 2 - h // 2, new_w // 2 - w // 2  # as the original pad_if_too_small
    pad = (left, new_w - w - left, top, new_h - h - top)
    return F.pad(images, pad, value=0), F.pad(labels, pad, value=IGNORE)


def crop_batch(images: torch.Tensor, labels: torch.Tensor, crop: int, *, train: bool,
               generator: torch.Generator | None, index: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop samples of images (N, C, H, W) / labels (N, H, W) with one gather, on their device.

    index (B,): which samples (default all). Without padding the crops are read straight from the full
    tensors, so no intermediate copy of whole images is made.
    """
    device = images.device
    index = torch.arange(len(images), device=device) if index is None else index.to(device)
    if min(labels.shape[-2:]) < crop:
        images, labels = pad_to(images[index], labels[index], crop)
        index = torch.arange(len(images), device=device)
    c, h, w = images.shape[1:]
    oy, ox = crop_offsets(h, w, crop, len(index), train=train, generator=generator)
    steps = torch.arange(crop)
    rows = (oy[:, None] + steps).to(device)  # (B, crop)
    cols = (ox[:, None] + steps).to(device)  # (B, crop)
    ci = torch.arange(c, device=device)
    out_img = images[index[:, None, None, None], ci[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
    out_lbl = labels[index[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out_img, out_lbl  # (B, C, crop, crop), (B, crop, crop)


def batches(dataset_set: SegmentationSet, *, batch_size: int, crop: int, train: bool,
            generator: torch.Generator | None = None, device: torch.device | str | None = None,
            drop_last: bool = False, shuffle: bool | None = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images float32 (B, C, crop, crop) in [0, 1], labels long (B, crop, crop), 255 = ignore).

    train=True: random crop (shared by both views, which are made later from this crop) and, by default,
    a shuffled order; train=False: centre crop, dataset order. All randomness comes from `generator`
    (a CPU torch.Generator), so a seeded generator gives the same batches on any device. For a uniform set
    the crops are one indexing operation on the set's own device (keep the set on the GPU with .to()).
    """
    if batch_size < 1 or crop < 1:
        raise ValueError(f"batches: batch_size={batch_size}, crop={crop}; expected >= 1")
    n = len(dataset_set)
    shuffle = train if shuffle is None else shuffle
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        images, labels = _gather(dataset_set, index, crop, train=train, generator=generator)
        target = device if device is not None else images.device
        images = images.to(target, non_blocking=True).float().div_(255.0)
        yield images, labels.to(target, non_blocking=True).long()


def _gather(data: SegmentationSet, index: torch.Tensor, crop: int, *, train: bool,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cropped uint8 images (B, C, crop, crop) and labels (B, crop, crop) of the samples at `index`."""
    if data.uniform:
        return crop_batch(data.images, data.labels, crop, train=train, generator=generator, index=index)
    crops = [crop_batch(data.images[i][None], data.labels[i][None], crop, train=train, generator=generator)
             for i in index.tolist()]
    return torch.cat([x for x, _ in crops]), torch.cat([y for _, y in crops])
