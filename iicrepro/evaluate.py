"""Evaluation after an epoch (IIC section 4.2, facts section 6).

Network in eval mode, argmax per pixel, one confusion matrix per head and sub-head over the whole
evaluation set (counted pixels only), matched once: head B one-to-one (Hungarian), head A many-to-one
(majority, for the overclustered head). With several sub-heads the reported one is the most accurate on
this split, as in the released code (labels choose it; all sub-heads' accuracies are kept).
"""
from __future__ import annotations

import torch

from iicrepro import metrics
from iicrepro.data import batches
from iicrepro.distributed import World, shard
from iicrepro.precision import resolve_bf16
from iicrepro.views import sobel_channels

MATCHING = {"B": ("hungarian", metrics.match_hungarian), "A": ("majority", metrics.match_majority)}


@torch.no_grad()
def evaluate(net: torch.nn.Module, eval_set, *, config, device: torch.device, heads=("B", "A"),
             world: World = World()) -> dict:
    """Scores of each head on ``eval_set``: {"b": {...}, "a": {...}} (a head not in ``heads`` is None).

    net: forward(x, head) -> list of (B, K, H, W) probabilities. Under several processes each evaluates
    its share of every batch and the confusion matrices are summed.
    """
    was_training = net.training
    net.eval()
    num_classes = config.spec.num_classes
    k = {"A": config.k_a, "B": config.k_b}
    cms = {h: [metrics.ConfusionMatrix(k[h], num_classes, device=device)
               for _ in range(config.num_subheads)] for h in heads}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_bf16(config.bf16, device))
    for images, labels in batches(eval_set, batch_size=config.eval_batch_size, crop=config.input_size,
                                  train=False, generator=None, device=device, drop_last=False):
        images, labels = shard(images, world), shard(labels, world)  # (B_local, C, H, W), (B_local, H, W)
        if images.shape[0] == 0:
            continue
        x = network_input(images, sobel=config.sobel)  # (B_local, C', H, W)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            outputs = net(x, head=tuple(heads))  # {head: list of (B_local, K, H, W)}, one trunk pass
        for head in heads:
            for cm, probs in zip(cms[head], outputs[head]):
                cm.update(probs.argmax(dim=1), labels)
    net.train(was_training)
    result = {"b": None, "a": None}
    for head in heads:
        result[head.lower()] = _head_scores([cm.all_reduce() for cm in cms[head]], head)
    return result


def network_input(images: torch.Tensor, *, sobel: bool) -> torch.Tensor:
    """What the network sees at evaluation: the image (B, C, H, W), plus Sobel dx, dy when enabled
    (as views.make_views builds x1)."""
    return torch.cat([images, sobel_channels(images)], dim=1) if sobel else images


def _head_scores(cms: list, head: str) -> dict:
    """Match every sub-head, report the most accurate one (released code's rule) and all accuracies."""
    name, match = MATCHING[head]
    per_subhead = []
    for cm in cms:
        matrix = cm.matrix  # (K, C) on the CPU
        per_subhead.append((metrics.scores(matrix, match(matrix)), matrix))
    accs = [s["acc"] for s, _ in per_subhead]
    best = max(range(len(accs)), key=lambda i: -1.0 if accs[i] != accs[i] else accs[i])
    scores, matrix = per_subhead[best]
    return {"acc": scores["acc"], "miou": scores["miou"], "per_class_iou": scores["per_class_iou"],
            "matching": name, "subhead": best, "subhead_acc": accs,
            "counted_pixels": scores["counted_pixels"], "confusion": matrix.tolist()}
