"""The baselines of Table 4 on our data and protocol: k-means on pixel colours, and the untrained network.

Both are scored exactly as IIC is (IIC section 4.2, facts section 6): centre crops of the evaluation
images, one confusion matrix over every counted pixel of the split, one-to-one Hungarian matching of the
K = number-of-classes clusters, accuracy and mean IoU over the whole split.

- k-means: Lloyd's algorithm on the colour of single pixels (every stored channel, so RGB, or RGB + IR for
  Potsdam), values in [0, 1], k-means++ initialisation; fitted on a seeded sample of training pixels that
  count in the IIC loss (the same mask), run on the device with torch.
- random network: SegNet with its seeded initialisation and no training, head B argmax (the paper's
  "random CNN" / randomly initialised network rows).
"""
from __future__ import annotations

import torch

from iicrepro import metrics
from iicrepro.data import batches
from iicrepro.evaluate import evaluate
from iicrepro.model import SegNet

SAMPLE_PIXELS = 200_000  # training pixels k-means is fitted on
ITERATIONS = 50  # Lloyd iterations at most (stops early when assignments stop changing)


def kmeans(pixels: torch.Tensor, k: int, *, iterations: int = ITERATIONS, generator: torch.Generator) -> torch.Tensor:
    """Centroids (k, C) of pixels (N, C) by Lloyd's algorithm with k-means++ seeding (on pixels' device).

    generator: a CPU torch.Generator (seeds the initialisation; the iterations are deterministic).
    """
    if pixels.dim() != 2 or len(pixels) < k:
        raise ValueError(f"kmeans: expected pixels (N >= k={k}, C), got {tuple(pixels.shape)}")
    pixels = pixels.float()
    centroids = _kmeans_pp(pixels, k, generator)  # (k, C)
    assignment = None
    for _ in range(iterations):
        new = assign(pixels, centroids)  # (N,)
        if assignment is not None and torch.equal(new, assignment):
            break
        assignment = new
        sums = torch.zeros_like(centroids).index_add_(0, assignment, pixels)  # (k, C)
        counts = torch.bincount(assignment, minlength=k).unsqueeze(1)  # (k, 1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # empty cluster: stays
    return centroids


def _kmeans_pp(pixels: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++: each next centre drawn with probability proportional to the squared distance."""
    first = torch.randint(len(pixels), (1,), generator=generator).item()
    centres = [pixels[first]]
    dist = ((pixels - centres[0]) ** 2).sum(dim=1)  # (N,)
    for _ in range(1, k):
        weights = dist.cpu().double()
        if float(weights.sum()) <= 0:  # fewer distinct colours than k: any pixel
            weights = torch.ones_like(weights)
        index = torch.multinomial(weights, 1, generator=generator).item()
        centres.append(pixels[index])
        dist = torch.minimum(dist, ((pixels - pixels[index]) ** 2).sum(dim=1))
    return torch.stack(centres)  # (k, C)


def assign(pixels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (N,) for pixels (N, C), centroids (k, C)."""
    return torch.cdist(pixels.float(), centroids.float()).argmin(dim=1)


def training_pixels(train_set, *, crop: int, batch_size: int, sample: int, generator: torch.Generator,
                    device) -> torch.Tensor:
    """A seeded sample (<= sample, C) of the colours of counted pixels of the training images' centre crops.

    Counted: labels != 255 where the set masks by labels (CamVid, COCO-Stuff), every pixel otherwise.
    """
    chunks = []
    for images, labels in batches(train_set, batch_size=batch_size, crop=crop, train=False, device=device):
        colours = images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])  # (B*H*W, C)
        if getattr(train_set, "mask_from_labels", True):
            colours = colours[labels.reshape(-1) != 255]
        chunks.append(colours)
    pixels = torch.cat(chunks)  # (N, C)
    if len(pixels) > sample:
        pixels = pixels[torch.randperm(len(pixels), generator=generator)[:sample].to(pixels.device)]
    return pixels


def kmeans_predict(images: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Cluster id per pixel (B, H, W) of images (B, C, H, W)."""
    b, c, h, w = images.shape
    return assign(images.permute(0, 2, 3, 1).reshape(-1, c), centroids).reshape(b, h, w)


def score_kmeans(eval_set, centroids: torch.Tensor, *, config, device) -> dict:
    """Head-B-style scores of the k-means clustering on one split (Hungarian, whole-set confusion)."""
    cm = metrics.ConfusionMatrix(len(centroids), config.spec.num_classes, device=device)
    for images, labels in batches(eval_set, batch_size=config.eval_batch_size, crop=config.input_size,
                                  train=False, device=device):
        cm.update(kmeans_predict(images, centroids), labels)
    matrix = cm.matrix  # (K, C)
    mapping = metrics.match_hungarian(matrix)
    return {**metrics.scores(matrix, mapping), "matching": "hungarian", "confusion": matrix.tolist(),
            "mapping": mapping.tolist()}


def kmeans_baseline(train_set, eval_sets: dict, *, config, device, sample: int = SAMPLE_PIXELS,
                    iterations: int = ITERATIONS) -> tuple[dict, torch.Tensor]:
    """k-means (K = classes) fitted on training pixels, scored on every evaluation split.

    Returns ({split: scores}, centroids (K, C)).
    """
    generator = torch.Generator().manual_seed(config.seed)
    pixels = training_pixels(train_set, crop=config.input_size, batch_size=config.eval_batch_size,
                             sample=sample, generator=generator, device=device)
    centroids = kmeans(pixels, config.spec.num_classes, iterations=iterations, generator=generator)
    scores = {name: score_kmeans(split, centroids, config=config, device=device)
              for name, split in eval_sets.items() if len(split) > 0}
    return scores, centroids


def random_network(config, device) -> SegNet:
    """The network of `config` with its seeded initialisation, untrained, in eval mode."""
    torch.manual_seed(config.seed)
    net = SegNet(config.in_channels, config.k_a, config.k_b, num_subheads=config.num_subheads, mode=config.mode)
    return net.to(device).eval()


def random_net_baseline(eval_sets: dict, *, config, device) -> tuple[dict, SegNet]:
    """Head B of the untrained network, Hungarian-matched, on every evaluation split.

    Returns ({split: scores}, network).
    """
    net = random_network(config, device)
    scores = {}
    for name, split in eval_sets.items():
        if len(split) > 0:
            result = evaluate(net, split, config=config, device=torch.device(device), heads=("B",))["b"]
            scores[name] = {**result, "mapping": metrics.match_hungarian(result["confusion"]).tolist()}
    return scores, net


def run_blocks(kind: str, scores: dict) -> dict:
    """The baseline's metrics in the run file's shape: "baseline" plus a "selection" like a trained run's
    (epoch 0, no training), so the book reads both protocols the same way for every run."""
    paper = "paper_eval" if "paper_eval" in scores else next(iter(scores))
    free = "heldout" if "heldout" in scores else paper

    def entry(rule: str, split: str) -> dict:
        s = scores[split]
        return {"rule": rule, "epoch": 0, "split": split, "acc": s["acc"], "miou": s["miou"],
                "per_class_iou": s["per_class_iou"]}
    splits = {name: {k: s[k] for k in ("acc", "miou", "per_class_iou", "counted_pixels", "confusion")}
              for name, s in scores.items()}
    return {"baseline": {"kind": kind, "acc": scores[paper]["acc"], "miou": scores[paper]["miou"],
                         "per_class_iou": scores[paper]["per_class_iou"], "split": paper, "splits": splits},
            "selection": {"paper": entry(f"{kind} baseline (no training) on {paper}", paper),
                          "last": entry(f"{kind} baseline (no training) on {free}", free)}}
