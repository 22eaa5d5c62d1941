"""Training: ``fit(config) -> History`` (IIC, Ji et al. 2019, section 3.3 and 4.2; facts sections 2, 6).

One step: a batch of crops on the device -> two views (views.make_views) -> the network on x1 and on x2
as two separate calls, as the original does (BatchNorm statistics are then per view, which a single call
on the concatenated batch would change) -> p2 mapped back into x1's frame -> the IIC loss (mean over
sub-heads) -> Adam with a constant learning rate. Two heads: schedule "paper" alternates heads per epoch
(epoch 1 head A, epoch 2 head B, ...), "released" trains A then B inside every epoch (a full pass over the
data for each), ``overcluster=False`` trains head B only. After every epoch both heads are evaluated on
each evaluation set and a checkpoint is written atomically.
"""
from __future__ import annotations

import itertools
import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from iicrepro import checkpoint as ckpt
from iicrepro import data
from iicrepro.data.splits import read_run_sets, restrict
from iicrepro.distributed import World, broadcast_buffers, seg_loss, setup_world, shard
from iicrepro.evaluate import evaluate
from iicrepro.history import HISTORY_NAME, History, select_epochs, write_history
from iicrepro.model import SegNet
from iicrepro.precision import describe as describe_precision
from iicrepro.precision import resolve_bf16
from iicrepro.views import invert, make_views

__all__ = ["fit", "History", "select_epochs", "loss_mask", "heads_for_epoch"]

MASKED_FAMILIES = ("cocostuff", "camvid")  # loss mask = pixels of the target classes (facts section 3)
UNMASKED_FAMILIES = ("potsdam", "dubai")  # loss mask all ones, as the original's Potsdam (facts section 3)
RESUMABLE_CHANGES = ("epochs", "device", "data_root", "compile", "checkpointing", "channels_last",
                     "eval_batch_size", "num_workers")  # fields a resumed run may change


def loss_mask(labels: torch.Tensor, family: str, *, from_labels: bool | None = None) -> torch.Tensor | None:
    """Pixels that count in the loss: (B, H, W) bool, or None for all pixels.

    COCO-Stuff (and CamVid, its offline analogue): labelled pixels of the target classes, labels != 255,
    as the original (padding and non-target classes are 255). Potsdam (and Dubai): every pixel, as the
    original; its unlabelled training images carry no labels at all. from_labels (the data set's own
    ``mask_from_labels``), when given, decides instead of the family.
    """
    if from_labels is None:
        if family not in MASKED_FAMILIES + UNMASKED_FAMILIES:
            raise ValueError(f"unknown dataset family {family!r}: expected one of "
                             f"{MASKED_FAMILIES + UNMASKED_FAMILIES}")
        from_labels = family in MASKED_FAMILIES
    return labels != 255 if from_labels else None  # (B, H, W)


def evaluated(config, epoch: int) -> bool:
    """Whether ``epoch`` (1-based) is evaluated: every ``eval_every``-th epoch and the last one."""
    return epoch % config.eval_every == 0 or epoch == config.epochs


def heads_for_epoch(config, epoch: int) -> list[str]:
    """Heads trained in ``epoch`` (1-based), in order."""
    if not config.overcluster:
        return ["B"]
    if config.schedule == "released":
        return ["A", "B"]
    return ["A"] if epoch % 2 == 1 else ["B"]


class _PairForward(torch.nn.Module):
    """Both views through the network as two calls: one module for DDP to wrap (one forward per step)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, head: str):
        return self.net(x1, head=head), self.net(x2, head=head)  # two lists of (B, K, H, W)


@dataclass
class _Engine:
    """Everything one process trains with (built once by ``_build``)."""

    config: object
    device: torch.device
    world: World
    net: SegNet  # the plain network: state dicts, checkpoints
    eval_net: torch.nn.Module  # the (possibly compiled) network for evaluation
    pair: torch.nn.Module  # _PairForward, possibly compiled inside and wrapped in DDP
    optimiser: torch.optim.Optimizer
    generators: dict  # "data": order and crops (CPU), "views": jitter and flips (device)
    bf16: bool  # autocast active
    channels_last: bool  # channels_last active
    mask_from_labels: bool | None = None  # the training set's own statement, see loss_mask

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(config) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available: use device='cpu' or 'auto'")
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def _build(config, device: torch.device, world: World) -> _Engine:
    """Network, optimiser (Adam, default betas, no weight decay, constant lr) and generators, seeded."""
    seed_everything(config.seed)
    cuda = device.type == "cuda"
    bf16 = resolve_bf16(config.bf16, device)
    net = SegNet(config.in_channels, config.k_a, config.k_b, num_subheads=config.num_subheads,
                 mode=config.mode, checkpointing=config.checkpointing).to(device)
    channels_last = config.channels_last  # honoured on the CPU too (`iicrepro bench --precision` measures it)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    run_net = torch.compile(net) if config.compile else net
    pair = _PairForward(run_net)
    if world.active:  # head A or B is unused in every step, hence find_unused_parameters
        pair = torch.nn.parallel.DistributedDataParallel(
            pair, device_ids=[device.index] if cuda else None, find_unused_parameters=True)
    generators = {"data": torch.Generator().manual_seed(config.seed),
                  "views": torch.Generator(device=device).manual_seed(config.seed + 1)}
    return _Engine(config, device, world, net, run_net, pair, optimiser, generators,
                   bf16=bf16, channels_last=channels_last)


def _train_step(engine: _Engine, images: torch.Tensor, labels: torch.Tensor, head: str, lam: float):
    """Forward and backward of one batch; returns (loss, loss with lambda = 1), detached, not yet stepped.

    images: (B, C, H, W) in [0, 1]; labels: (B, H, W). Views are drawn for the whole batch (the same on
    every process), then each process takes its share.
    """
    cfg, world = engine.config, engine.world
    views = make_views(images, jitter=cfg.jitter, flip_p=cfg.flip_p, sobel=cfg.sobel,
                       generator=engine.generators["views"])
    x1, x2, flipped = shard(views.x1, world), shard(views.x2, world), shard(views.flipped, world)
    mask = shard(loss_mask(labels, cfg.spec.family, from_labels=engine.mask_from_labels), world)
    if engine.channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)
    engine.optimiser.zero_grad(set_to_none=True)
    with engine.autocast():
        outs1, outs2 = engine.pair(x1, x2, head)  # lists of (B_local, K, H, W), one per sub-head
    losses = [seg_loss(p1.float(), invert(p2.float(), flipped), mask, half_side=cfg.half_side, lam=lam,
                       impl=cfg.loss_impl, world=world) for p1, p2 in zip(outs1, outs2)]
    loss = torch.stack([pair[0] for pair in losses]).mean()  # sub-heads averaged
    loss_no_lambda = torch.stack([pair[1] for pair in losses]).mean()
    loss.backward()
    return loss.detach(), loss_no_lambda.detach()


def _faithful_zero_grads(optimiser: torch.optim.Optimizer) -> None:
    """Give a zero gradient to every parameter that has optimiser state but got no gradient this step.

    The original (torch 0.4) zeroed gradients instead of dropping them, so Adam kept moving the idle
    head with its momentum; a parameter has Adam state exactly when it had a gradient before, which keeps
    this identical after a resume.
    """
    for group in optimiser.param_groups:
        for p in group["params"]:
            if p.grad is None and p in optimiser.state:
                p.grad = torch.zeros_like(p)


def _interactive() -> bool:
    """A terminal or a notebook (live progress bars), not a log file."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _bar(progress: bool, **kwargs):
    """tqdm in a terminal or a notebook; none in a log file (fit prints one line per epoch there instead of
    hundreds of carriage-return updates)."""
    return tqdm(disable=not (progress and _interactive()), mininterval=0.1, dynamic_ncols=True, **kwargs)


def _train_head(engine: _Engine, head: str, train_set, *, epoch: int, max_batches, progress: bool) -> dict:
    """One pass over the training set for one head; returns mean losses and the number of pairs."""
    cfg = engine.config
    lam = cfg.lambda_a if head == "A" else cfg.lambda_b
    total = math.ceil(len(train_set) / cfg.batch_size)
    total = total if max_batches is None else min(total, max_batches)
    loader = data.batches(train_set, batch_size=cfg.batch_size, crop=cfg.input_size, train=True,
                          generator=engine.generators["data"], device=engine.device, drop_last=False)
    sums, count, pairs = [0.0, 0.0], 0, 0
    bar = _bar(progress, total=total, desc=f"epoch {epoch} head {head}", leave=False, unit="batch")
    for b, (images, labels) in enumerate(itertools.islice(loader, total)):
        if images.shape[0] < engine.world.size:  # a last batch too small to share: skipped
            continue
        loss, loss_no_lambda = _train_step(engine, images, labels, head, lam)
        value, value_no_lambda = loss.item(), loss_no_lambda.item()  # one sync per step, as the original
        if not math.isfinite(value):
            raise RuntimeError(f"non-finite loss ({value}) in epoch {epoch}, head {head}, batch {b + 1} of "
                               f"{total}: stopped; the checkpoint of epoch {epoch - 1} (if any) is kept")
        if cfg.mode == "faithful":
            _faithful_zero_grads(engine.optimiser)
        engine.optimiser.step()
        sums[0], sums[1], count, pairs = sums[0] + value, sums[1] + value_no_lambda, count + 1, pairs + len(images)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        bar.update(1)
    bar.close()
    return {"loss": sums[0] / max(count, 1), "loss_no_lambda": sums[1] / max(count, 1), "pairs": pairs}


def _evaluate_all(engine: _Engine, eval_sets: dict) -> dict:
    """Both heads (head B only when head A is not trained) on every non-empty evaluation set."""
    broadcast_buffers(engine.net, engine.world)  # every process evaluates with rank 0's BN statistics
    heads = ("B", "A") if engine.config.overcluster else ("B",)
    return {name: evaluate(engine.eval_net, split, config=engine.config, device=engine.device, heads=heads,
                           world=engine.world)
            for name, split in eval_sets.items() if len(split) > 0}


def _peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory of the epoch, or on the CPU the process's peak resident set so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _run_epoch(engine: _Engine, epoch: int, train_set, eval_sets: dict, *, max_batches, progress) -> dict:
    """Train the epoch's heads, evaluate, time it: one History record."""
    start = time.perf_counter()
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    heads = heads_for_epoch(engine.config, epoch)
    record = {"epoch": epoch, "heads_trained": heads}
    pairs = 0
    for head in ("A", "B"):
        result = (_train_head(engine, head, train_set, epoch=epoch, max_batches=max_batches, progress=progress)
                  if head in heads else {"loss": None, "loss_no_lambda": None, "pairs": 0})
        record[f"loss_{head.lower()}"] = result["loss"]
        record[f"loss_{head.lower()}_nolambda"] = result["loss_no_lambda"]
        pairs += result["pairs"]
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    train_s = time.perf_counter() - start
    record["eval"] = _evaluate_all(engine, eval_sets) if evaluated(engine.config, epoch) else {}
    wall_s = time.perf_counter() - start
    record.update(wall_s=wall_s, train_s=train_s, eval_s=wall_s - train_s,
                  pairs_per_s=pairs / train_s if train_s > 0 else None,
                  peak_mem_mb=_peak_memory_mb(engine.device))
    return record


def _datasets(config, train_set, eval_sets):
    """The given sets, else the run's sets from config.data_root (iicrepro.data.splits, as the notebooks read
    them); checks the batch size against the training set."""
    if train_set is None or eval_sets is None:
        sets = read_run_sets(config.dataset, source={"root": config.data_root}, prescale=config.prescale,
                             paper_split=config.paper_split, min_coverage=config.min_coverage)
        sets = restrict(*sets, data_fraction=config.data_fraction, seed=config.seed, max_images=config.max_images,
                        max_eval_images=config.max_images)
        train_set = sets[0] if train_set is None else train_set
        eval_sets = sets[1] if eval_sets is None else eval_sets
    if config.batch_size > len(train_set):
        raise ValueError(f"batch_size={config.batch_size} is larger than the training set "
                         f"({len(train_set)} images of {getattr(train_set, 'name', config.dataset)})")
    return train_set, eval_sets


def _header(engine: _Engine, eval_sets: dict) -> History:
    """A new History: config, device, engine settings and the untrained network's scores."""
    device = engine.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    start = time.perf_counter()
    initial = _evaluate_all(engine, eval_sets)
    return History(config=engine.config.to_dict(), device=name,
                   engine={"world_size": engine.world.size, "bf16": engine.bf16,
                           "channels_last": engine.channels_last, "compile": engine.config.compile,
                           "torch": str(torch.__version__), **describe_precision(device)},
                   initial={"epoch": 0, "eval": initial, "eval_s": time.perf_counter() - start},
                   epochs=[], selection={})


def _resume(engine: _Engine, path: Path) -> tuple[History, int]:
    """Restore network, optimiser, random states and history from ``path``; returns (history, next epoch)."""
    state = ckpt.load_checkpoint(path)
    saved, now = state["config"], engine.config.to_dict()
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and _plain(saved.get(k)) != _plain(now[k]))
    if changed:
        raise ValueError(f"cannot resume from {path}: parameters {changed} differ from the checkpoint's "
                         f"(only {list(RESUMABLE_CHANGES)} may change)")
    if state["epoch"] > engine.config.epochs:
        raise ValueError(f"cannot resume from {path}: it holds epoch {state['epoch']}, past epochs="
                         f"{engine.config.epochs} (a shorter run needs another out_dir)")
    engine.net.load_state_dict(state["model"])
    engine.optimiser.load_state_dict(state["optimiser"])
    ckpt.set_rng_state(state["rng"], engine.generators)
    history = History(state["history"])
    history["config"] = now  # e.g. more epochs: a finished run extended (constant lr: trained as if that long)
    return history, state["epoch"] + 1


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _save(engine: _Engine, path: Path, epoch: int, history: History) -> None:
    ckpt.save_checkpoint(path, {
        "epoch": epoch, "config": engine.config.to_dict(), "model": engine.net.state_dict(),
        "optimiser": engine.optimiser.state_dict(), "history": history.to_dict(),
        "rng": ckpt.rng_state(engine.generators)})


def fit(config, *, out_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        train_set=None, eval_sets: dict | None = None, max_batches: int | None = None) -> History:
    """Train ``config`` to ``config.epochs`` epochs; returns the History (also in the checkpoint).

    out_dir: where checkpoint.pt and history.json are written (atomically) after every epoch (None: neither). resume: continue
    from out_dir/checkpoint.pt when it exists (else start afresh). train_set, eval_sets: SegmentationSets
    ({name: set}) instead of loading the dataset's splits. max_batches: at most this many batches per
    head and epoch (smoke runs). Under torchrun (WORLD_SIZE > 1) every process calls fit.
    """
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (where checkpoint.pt is)")
    device = _device(config)
    world = setup_world(device.type)
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    train_set, eval_sets = _datasets(config, train_set, eval_sets)
    engine = _build(config, device, world)
    engine.mask_from_labels = getattr(train_set, "mask_from_labels", None)
    path = Path(out_dir) / ckpt.CHECKPOINT_NAME if out_dir is not None else None
    if resume and path.is_file():
        history, first = _resume(engine, path)
    else:
        history, first = _header(engine, eval_sets), 1
    progress = progress and world.is_main
    epochs = _bar(progress, total=config.epochs, initial=first - 1, desc="epochs", unit="epoch")
    for epoch in range(first, config.epochs + 1):
        record = _run_epoch(engine, epoch, train_set, eval_sets, max_batches=max_batches, progress=progress)
        history["epochs"].append(record)
        history["selection"] = select_epochs(history)
        if path is not None and world.is_main:
            _save(engine, path, epoch, history)
            write_history(path.parent / HISTORY_NAME, history)  # watchable while the run goes on
        epochs.set_postfix(_summary(record), refresh=False)
        epochs.update(1)
        if progress and not _interactive():  # a log file: one plain line per epoch, no carriage returns
            print(f"epoch {epoch}/{config.epochs} " + " ".join(f"{k} {v}" for k, v in _summary(record).items())
                  + f" ({record['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    epochs.close()
    return history


def _summary(record: dict) -> dict:
    """A few numbers of an epoch for the progress bar."""
    out = {k: f"{record[k]:.3f}" for k in ("loss_a", "loss_b") if record[k] is not None}
    for name, scores in record["eval"].items():
        out[f"{name}_acc"] = f"{scores['b']['acc']:.3f}"
    return out
