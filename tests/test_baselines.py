"""Baselines (iicrepro.baselines): k-means on pixel colours and the untrained network, same protocol as IIC."""
from __future__ import annotations

import pytest
import torch

from iicrepro import baselines, experiment
from iicrepro.config import make_config


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated colour blobs (N, 3) and their ids (N,)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.2, 0.2], [0.2, 0.3, 0.9]])
    ids = torch.randint(3, (600,), generator=g)
    return centres[ids] + 0.02 * torch.randn(600, 3, generator=g), ids


def test_kmeans_recovers_separated_clusters():
    pixels, ids = blobs()
    centroids = baselines.kmeans(pixels, 3, generator=torch.Generator().manual_seed(0))
    found = baselines.assign(pixels, centroids)
    pairs = {(int(a), int(b)) for a, b in zip(found, ids)}
    assert len(pairs) == 3  # a one-to-one correspondence between found clusters and true blobs


def test_kmeans_is_seeded_and_checks_shapes():
    pixels, _ = blobs()
    a = baselines.kmeans(pixels, 3, generator=torch.Generator().manual_seed(5))
    b = baselines.kmeans(pixels, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"pixels \(N >= k=3, C\)"):
        baselines.kmeans(pixels[:2], 3, generator=torch.Generator())
    with pytest.raises(ValueError, match="pixels"):
        baselines.kmeans(pixels[None], 3, generator=torch.Generator())


def test_kmeans_with_fewer_colours_than_clusters():
    pixels = torch.zeros(50, 3)
    centroids = baselines.kmeans(pixels, 3, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (3, 3) and torch.isfinite(centroids).all()


def tiny_config(**overrides):
    return make_config("camvid3", input_size=24, eval_batch_size=8, device="cpu", k_a=4, **overrides)


def test_kmeans_baseline_on_flat_colour_regions():
    config = tiny_config()
    train_set, eval_sets = experiment.synthetic_sets(config)
    scores, centroids = baselines.kmeans_baseline(train_set, eval_sets, config=config, device="cpu")
    assert centroids.shape == (3, 3)
    assert set(scores) == {"paper_eval", "heldout"}
    assert scores["heldout"]["acc"] > 0.9  # palette colours plus noise: k-means separates them
    assert scores["heldout"]["matching"] == "hungarian" and len(scores["heldout"]["mapping"]) == 3


def test_random_net_baseline_is_scored_like_head_b():
    config = tiny_config()
    _, eval_sets = experiment.synthetic_sets(config, num_train=4, num_eval=4)
    scores, net = baselines.random_net_baseline(eval_sets, config=config, device="cpu")
    again, _ = baselines.random_net_baseline(eval_sets, config=config, device="cpu")
    assert not net.training
    assert 0 <= scores["heldout"]["acc"] <= 1 and scores["heldout"]["matching"] == "hungarian"
    assert scores["heldout"]["acc"] == again["heldout"]["acc"]  # seeded initialisation


def test_run_blocks_look_like_a_trained_run():
    scores = {split: {"acc": acc, "miou": 0.1, "per_class_iou": [0.1, 0.1, 0.1], "counted_pixels": 10,
                      "confusion": [[1]]} for split, acc in (("paper_eval", 0.4), ("heldout", 0.3))}
    blocks = baselines.run_blocks("kmeans", scores)
    assert blocks["baseline"]["kind"] == "kmeans" and blocks["baseline"]["acc"] == 0.4
    assert blocks["selection"]["paper"]["split"] == "paper_eval" and blocks["selection"]["last"]["acc"] == 0.3
    assert blocks["selection"]["paper"]["epoch"] == 0


def test_random_network_of_seed_s_is_the_initialisation_iic_seed_s_trains_from():
    """Pairs a random-network run with the IIC run of the same seed (the Results page's seed-by-seed gains)."""
    from iicrepro import train
    from iicrepro.distributed import World

    config = tiny_config(seed=3)
    engine = train._build(config, torch.device("cpu"), World())
    random_net = baselines.random_network(config, "cpu")
    trained_from, untrained = engine.net.state_dict(), random_net.state_dict()
    assert trained_from.keys() == untrained.keys()
    assert all(torch.equal(trained_from[k], untrained[k]) for k in untrained)
    other = baselines.random_network(tiny_config(seed=4), "cpu").state_dict()
    assert not all(torch.equal(other[k], untrained[k]) for k in untrained)
