"""evaluate(): matching per head, counted pixels, sub-heads, eval mode (CPU, a stand-in network)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from iicrepro.config import make_config
from iicrepro.data.base import SegmentationSet
from iicrepro.evaluate import evaluate, network_input

STEP = 80  # a pixel's red value is STEP * its class: the stand-in network reads the class from it


def coded_set(n: int = 6, size: int = 20) -> SegmentationSet:
    """Images whose red channel encodes the label (classes 0..2), a band of ignored pixels."""
    labels = torch.zeros(n, size, size, dtype=torch.uint8)
    labels[:, 5:] = 1
    labels[:, 12:, 6:] = 2
    labels[:, :, -5:] = 255
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0] = (labels.clamp(max=2) * STEP).to(torch.uint8)
    return SegmentationSet("camvid3", "paper_eval", images, labels, ("sky", "plant", "ground"),
                           tuple(str(i) for i in range(n)))


class Oracle(torch.nn.Module):
    """Head B: a permutation of the true class; head A: class * 2 + column parity (overclustered).
    Sub-head 1 (when asked for) always answers cluster 0."""

    def __init__(self, k_a: int = 6, subheads: int = 1):
        super().__init__()
        self.k_a, self.subheads = k_a, subheads

    def forward(self, x, head="B"):
        self.calls = getattr(self, "calls", 0) + 1
        if not isinstance(head, str):  # several heads: one call, as SegNet's one trunk pass
            return {h: self._head(x, h) for h in head}
        return self._head(x, head)

    def _head(self, x, head):
        cls = (x[:, 0] * 255 / STEP).round().long().clamp(0, 2)  # (B, H, W)
        if head == "B":
            clusters, k = torch.tensor([2, 0, 1])[cls], 3
        else:
            parity = torch.arange(x.shape[-1]) % 2
            clusters, k = cls * 2 + parity, self.k_a
        outputs = [F.one_hot(clusters, k).permute(0, 3, 1, 2).float()]
        if self.subheads == 2:
            outputs.append(F.one_hot(torch.zeros_like(clusters), k).permute(0, 3, 1, 2).float())
        return outputs


def config(**overrides):
    values = dict(input_size=16, k_a=6, k_b=3, sobel=False, eval_batch_size=4, device="cpu")
    values.update(overrides)
    return make_config("camvid3", **values)


def test_perfect_clustering_scores_one_under_both_matchings():
    net = Oracle().train()
    result = evaluate(net, coded_set(), config=config(), device=torch.device("cpu"))
    assert net.training  # mode restored
    b, a = result["b"], result["a"]
    assert (b["matching"], a["matching"]) == ("hungarian", "majority")
    assert b["acc"] == 1.0 and b["miou"] == 1.0 and a["acc"] == 1.0
    assert b["counted_pixels"] == 6 * 16 * 13  # centre crop keeps 3 of the 5 ignored columns
    assert len(b["confusion"]) == 3 and len(a["confusion"]) == 6
    assert net.calls == 2  # one network call per batch (6 images, batch 4) for both heads


def test_head_b_only_and_subhead_choice():
    result = evaluate(Oracle(subheads=2), coded_set(), config=config(num_subheads=2),
                      device=torch.device("cpu"), heads=("B",))
    assert result["a"] is None
    b = result["b"]
    assert b["subhead"] == 0 and b["subhead_acc"][0] == 1.0 and b["subhead_acc"][1] < 1.0


def test_network_input_adds_sobel_channels():
    images = torch.rand(2, 3, 12, 12)
    assert network_input(images, sobel=True).shape == (2, 5, 12, 12)
    assert network_input(images, sobel=False) is images
