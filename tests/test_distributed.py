"""Two gloo processes against one process holding the whole batch (CPU): the loss with joints summed
before normalisation, a DDP training step, and fit() under torch.distributed."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from iicrepro import train
from iicrepro.data import batches
from iicrepro.distributed import World, seg_loss, shard
from iicrepro.loss import iic_seg_loss

from test_train import tiny_config, tiny_set

WORLD_SIZE = 2


class TinyNet(torch.nn.Module):
    """SegNet's interface without BatchNorm (per-process batch statistics would differ from one process)."""

    def __init__(self, in_channels: int, k_a: int, k_b: int):
        super().__init__()
        self.trunk = torch.nn.Conv2d(in_channels, 8, kernel_size=3, padding=1)
        self.heads = torch.nn.ModuleDict({"A": torch.nn.Conv2d(8, k_a, 1), "B": torch.nn.Conv2d(8, k_b, 1)})

    def forward(self, x, head="B"):
        return [F.softmax(self.heads[head](torch.relu(self.trunk(x))), dim=1)]  # [(B, K, H, W)]


def probabilities():
    """The same p1, p2 (B=5: uneven shares), mask on every process."""
    gen = torch.Generator().manual_seed(0)
    p1 = torch.randn(5, 3, 10, 10, generator=gen).softmax(1)
    p2 = torch.randn(5, 3, 10, 10, generator=gen).softmax(1)
    return p1, p2, torch.rand(5, 10, 10, generator=gen) > 0.2


def loss_case(world: World) -> dict:
    p1, p2, mask = (shard(t, world).clone() for t in probabilities())
    p1.requires_grad_(True), p2.requires_grad_(True)
    loss, no_lambda = seg_loss(p1, p2, mask, half_side=2, lam=1.5, impl="auto", world=world)
    loss.backward()
    return {"loss": loss.detach(), "no_lambda": no_lambda.detach(), "g1": p1.grad, "g2": p2.grad}


def step_engine(world: World, ddp: bool):
    """A train._Engine around TinyNet (DDP-wrapped when ddp), seeded identically on every process."""
    config = tiny_config()
    torch.manual_seed(0)
    net = TinyNet(config.in_channels, config.k_a, config.k_b)
    pair = train._PairForward(net)
    if ddp:
        pair = torch.nn.parallel.DistributedDataParallel(pair, find_unused_parameters=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    generators = {"data": torch.Generator().manual_seed(0), "views": torch.Generator().manual_seed(1)}
    return train._Engine(config, torch.device("cpu"), world, net, net, pair, optimiser, generators,
                         bf16=False, channels_last=False, mask_from_labels=True)


def step_case(world: World, ddp: bool) -> dict:
    """Two steps (head A, then head B) on the same batch of 6 crops; losses and gradients of each."""
    engine = step_engine(world, ddp)
    images, labels = next(batches(tiny_set(), batch_size=6, crop=16, train=True,
                                  generator=torch.Generator().manual_seed(3)))
    out = {}
    for head, lam in (("A", 1.0), ("B", 1.5)):
        loss, no_lambda = train._train_step(engine, images, labels, head, lam)
        grads = {n: p.grad.clone() for n, p in engine.net.named_parameters() if p.grad is not None}
        out[head] = {"loss": loss, "no_lambda": no_lambda, "grads": grads}
        engine.optimiser.step()
    return out


def fit_case(out_dir) -> dict:
    history = train.fit(tiny_config(epochs=2), out_dir=out_dir, progress=False, train_set=tiny_set(),
                        eval_sets={"paper_eval": tiny_set(3, seed=1, split="paper_eval")}, max_batches=1)
    return {"losses": [(r["loss_a"], r["loss_b"]) for r in history["epochs"]],
            "acc": [r["eval"]["paper_eval"]["b"]["acc"] for r in history["epochs"]],
            "world_size": history["engine"]["world_size"]}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        world = World(rank=rank, size=WORLD_SIZE)
        results = {"loss": loss_case(world), "step": step_case(world, ddp=True), "fit": fit_case(out_dir)}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)], out


def test_loss_equals_single_process_loss(ranks):
    results, _ = ranks
    p1, p2, mask = (t.clone() for t in probabilities())
    p1.requires_grad_(True), p2.requires_grad_(True)
    loss, no_lambda = iic_seg_loss(p1, p2, mask, half_side=2, lam=1.5)
    loss.backward()
    for r in results:
        torch.testing.assert_close(r["loss"]["loss"], loss.detach(), rtol=0, atol=1e-6)
        torch.testing.assert_close(r["loss"]["no_lambda"], no_lambda.detach(), rtol=0, atol=1e-6)
    # The all-reduce's backward sums over processes: each holds WORLD_SIZE x its share of the gradient,
    # which DDP's averaging turns back into the single-process gradient (see the step test).
    for name, full in (("g1", p1.grad), ("g2", p2.grad)):
        joined = torch.cat([r["loss"][name] for r in results]) / WORLD_SIZE
        torch.testing.assert_close(joined, full, rtol=1e-5, atol=1e-7)


def test_ddp_step_equals_single_process_step(ranks):
    results, _ = ranks
    single = step_case(World(), ddp=False)
    for head in ("A", "B"):
        for r in results:
            torch.testing.assert_close(r["step"][head]["loss"], single[head]["loss"], rtol=0, atol=1e-6)
            grads = r["step"][head]["grads"]
            assert set(single[head]["grads"]) >= {"trunk.weight", f"heads.{head}.weight"}
            for name, grad in single[head]["grads"].items():
                torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
            for name in set(grads) - set(single[head]["grads"]):  # the idle head: zero if present at all
                assert not grads[name].any()


def test_fit_under_two_processes(ranks):
    results, out = ranks
    assert results[0]["fit"] == results[1]["fit"]  # one loss, one evaluation for the whole run
    assert results[0]["fit"]["world_size"] == WORLD_SIZE
    assert (out / "checkpoint.pt").is_file()
