"""One training step (DESIGN.md, data flow), evaluation, and a preset's record: the step split per head
(views, forward, loss, backward, optimiser), throughput, achieved FLOP/s, memory, the cost of activation
checkpointing, evaluation images/s, and the loss share of a step at K = 45 (issue 5)."""
from __future__ import annotations

import time

import torch

from iicrepro.bench.common import Clock, autocast, median, peak_memory, reset_memory, sync
from iicrepro.bench.loss_sweep import loss_inputs, loss_repeats, time_loss
from iicrepro.config import PRESETS, make_config

# Pairs per epoch and images per paper-protocol evaluation (facts section 3: COCO-3 36,660 and COCO-15
# 51,804 curated images, evaluated transductively on all of them; Potsdam 8,550 patches, 5,400 labelled).
PAPER_EPOCH = {"cocostuff3": (36660, 36660), "cocostuff15": (51804, 51804),
               "potsdam3": (8550, 5400), "potsdam6": (8550, 5400)}
MASKED_FAMILIES = ("cocostuff", "camvid")  # loss mask from the labels; Potsdam and Dubai: all pixels


def _synthetic_batch(cfg, *, batch: int, size: int, device: torch.device, gen: torch.Generator):
    """Images in [0, 1] (B, C, S, S), labels (B, S, S) with ~10% ignored, and the loss mask (B, S, S)."""
    channels, classes = cfg.spec.image_channels, cfg.spec.num_classes
    images = torch.rand(batch, channels, size, size, device=device, generator=gen)
    labels = torch.randint(0, classes, (batch, size, size), device=device, generator=gen)
    labels[torch.rand(batch, size, size, device=device, generator=gen) < 0.1] = 255
    return images, labels, labels != 255


def _train_step(model, optimiser, images, mask, *, cfg, head: str, clock: Clock, bf16: bool, gen):
    """One step of one head as train.py takes it (facts sections 5-6), a clock mark at each phase boundary.

    Not mirrored: the faithful mode's zero gradients for the idle head (a fresh optimiser per head here).
    """
    from iicrepro.loss import iic_seg_loss
    from iicrepro.views import invert, make_views

    device = images.device
    clock.mark()
    optimiser.zero_grad(set_to_none=True)
    views = make_views(images, jitter=cfg.jitter, flip_p=cfg.flip_p, sobel=cfg.sobel, generator=gen)
    x1, x2 = views.x1, views.x2  # (B, C', S, S) each
    if cfg.channels_last:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    clock.mark()
    with autocast(device, bf16):
        outs1 = model(x1, head=head)  # list of (B, K, S, S), one per sub-head
        outs2 = model(x2, head=head)  # two calls, as the original (BatchNorm statistics per view)
    clock.mark()
    lam = cfg.lambda_a if head == "A" else cfg.lambda_b
    losses = [iic_seg_loss(p1.float(), invert(p2.float(), views.flipped), mask, half_side=cfg.half_side,
                           lam=lam, impl=cfg.loss_impl)[0] for p1, p2 in zip(outs1, outs2)]
    loss = torch.stack(losses).mean()  # sub-heads averaged
    clock.mark()
    loss.backward()
    loss.item()  # train.py reads the loss once per step (a synchronisation), before the optimiser step
    clock.mark()
    optimiser.step()
    clock.mark()


PHASES = ("views", "forward", "loss", "backward", "optimiser")


def bench_step(model, cfg, *, head: str, batch: int, size: int, device, steps: int, warmup: int,
               bf16: bool, flops_per_image: int, epoch_pairs: int | None, peak_tflops: float) -> dict:
    """Median phase split over `steps` timed steps after `warmup` steps; throughput, FLOP/s, memory.

    flops_per_image: forward FLOPs of one image through trunk + `head` (model.complexity). Shares use the
    split; pairs/s and the epoch time use the mean wall time of a step (synchronised at both ends).
    """
    gen = torch.Generator(device=device).manual_seed(0)
    images, labels, _ = _synthetic_batch(cfg, batch=batch, size=size, device=device, gen=gen)
    mask = labels != 255 if cfg.spec.family in MASKED_FAMILIES else None  # (B, S, S), as train.loss_mask
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    reset_memory(device)
    for _ in range(warmup):
        _train_step(model, optimiser, images, mask, cfg=cfg, head=head, clock=Clock(device), bf16=bf16, gen=gen)
    sync(device)
    splits, wall = [], time.perf_counter()
    for _ in range(steps):
        clock = Clock(device)
        _train_step(model, optimiser, images, mask, cfg=cfg, head=head, clock=clock, bf16=bf16, gen=gen)
        splits.append(clock.durations_ms())
    sync(device)
    wall_ms = (time.perf_counter() - wall) * 1e3 / steps  # includes host gaps between steps
    split = {name: median([s[i] for s in splits]) for i, name in enumerate(PHASES)}
    step_ms = sum(split.values())
    flops_pair = 2 * 3 * flops_per_image  # two views; backward ~ 2x forward
    achieved = flops_pair * batch / ((split["forward"] + split["backward"]) / 1e3)
    pairs_s = batch / (wall_ms / 1e3)
    return {"head": head, "k": cfg.k_a if head == "A" else cfg.k_b, "batch_size": batch, "input_size": size,
            "steps": steps, "split_ms": split, "step_ms": step_ms, "wall_step_ms": wall_ms,
            "shares": {k: v / step_ms for k, v in split.items()}, "pairs_per_s": pairs_s,
            "epoch_pairs": epoch_pairs, "epoch_s": epoch_pairs / pairs_s if epoch_pairs else None,
            "fwd_bwd_flops_per_pair": flops_pair, "achieved_tflops": achieved / 1e12,
            "matmul_peak_fraction": achieved / 1e12 / peak_tflops, **peak_memory(device)}


def _eval_input(views, images: torch.Tensor, *, sobel: bool) -> torch.Tensor:
    """The network's input at evaluation: images (+ Sobel channels), as evaluate.py builds it."""
    if hasattr(views, "network_input"):
        return views.network_input(images, sobel=sobel)
    return torch.cat([images, views.sobel_channels(images)], dim=1) if sobel else images


@torch.no_grad()
def bench_eval(model, cfg, *, batch: int, size: int, device, steps: int, bf16: bool,
               eval_images: int | None) -> dict:
    """Evaluation throughput of head B: Sobel input, forward, argmax, confusion-matrix update (images/s)."""
    from iicrepro.metrics import ConfusionMatrix
    from iicrepro import views

    gen = torch.Generator(device=device).manual_seed(1)
    images, labels, _ = _synthetic_batch(cfg, batch=batch, size=size, device=device, gen=gen)
    cm = ConfusionMatrix(cfg.k_b, cfg.spec.num_classes, device=device)
    was_training = model.training
    model.eval()

    def one_batch():
        x = _eval_input(views, images, sobel=cfg.sobel)  # (B, C', S, S)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            probs = model(x, head="B")[0]  # (B, K_B, S, S)
        cm.update(probs.argmax(dim=1), labels)

    one_batch()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_batch()
    sync(device)
    model.train(was_training)
    images_s = batch * steps / (time.perf_counter() - start)
    return {"batch_size": batch, "input_size": size, "images_per_s": images_s, "eval_images": eval_images,
            "eval_s": eval_images / images_s if eval_images else None}


def _epoch_sizes(preset: str, *, look_up: bool) -> dict:
    """Pairs per epoch and evaluation images: the paper's (facts section 3), else the prepared cache's
    "train" and "paper_eval" splits (default options), else unknown."""
    if preset in PAPER_EPOCH:
        pairs, evals = PAPER_EPOCH[preset]
        return {"epoch_pairs": pairs, "eval_images": evals, "source": "paper (iic-facts.md section 3)"}
    unknown = {"epoch_pairs": None, "eval_images": None}
    if not look_up:
        return {**unknown, "source": "unknown (not looked up with --tiny)"}
    try:
        from iicrepro import data

        folder = data.cache_dir(PRESETS[preset]["dataset"], None)
        if not (folder / "manifest.json").is_file():
            return {**unknown, "source": f"unknown (no prepared cache at {folder})"}
        sizes = {split: len(data.load_split(PRESETS[preset]["dataset"], split, cache=folder))
                 for split in ("train", "paper_eval")}
    except (ImportError, OSError, ValueError, KeyError) as error:
        return {**unknown, "source": f"unknown ({type(error).__name__}: {error})"}
    return {"epoch_pairs": sizes["train"], "eval_images": sizes["paper_eval"],
            "source": f"prepared cache {folder} (splits train, paper_eval)"}


def build_model(cfg, device, *, checkpointing: bool, compile_model: bool):
    """SegNet for `cfg` on `device`: (the plain module, for model.complexity; the one to run, compiled when
    `compile_model`)."""
    from iicrepro.model import SegNet

    model = SegNet(cfg.in_channels, cfg.k_a, cfg.k_b, num_subheads=cfg.num_subheads, mode=cfg.mode,
                   checkpointing=checkpointing).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, (torch.compile(model) if compile_model else model)


def bench_preset(name: str, args, device, peak_tflops: float) -> dict:
    """Training steps of each head (with and, optionally, without checkpointing) and evaluation."""
    from iicrepro.model import complexity

    cfg = make_config(name, mode=args.mode, loss_impl=args.loss_impl, channels_last=args.channels_last)
    size = args.size or cfg.input_size
    batch = min(args.batch or cfg.batch_size, cfg.batch_size)
    sizes = _epoch_sizes(name, look_up=not args.tiny)
    record = {"paper_batch_size": cfg.batch_size, "paper_input_size": cfg.input_size, "batch_size": batch,
              "input_size": size, "in_channels": cfg.in_channels, "k_a": cfg.k_a, "k_b": cfg.k_b,
              "half_side": cfg.half_side, "sobel": cfg.sobel, "family": cfg.spec.family, **sizes,
              "steps": {}, "checkpointing": {}}
    for ckpt in (False, True) if name in args.checkpointing else (False,):
        plain, model = build_model(cfg, device, checkpointing=ckpt, compile_model=args.compile)
        key = "checkpointing" if ckpt else "steps"
        for head in args.heads:
            flops = complexity(plain, cfg.in_channels, size, head=head)["flops"]
            record[key][head] = bench_step(model, cfg, head=head, batch=batch, size=size, device=device,
                                           steps=args.steps, warmup=args.warmup, bf16=args.bf16,
                                           flops_per_image=flops, epoch_pairs=sizes["epoch_pairs"],
                                           peak_tflops=peak_tflops)
            _progress(f"{name} head {head}{' ckpt' if ckpt else ''}", record[key][head])
        if not ckpt:
            eval_batch = min(args.batch or cfg.eval_batch_size, cfg.eval_batch_size)
            record["eval"] = bench_eval(model, cfg, batch=eval_batch, size=size, device=device,
                                        steps=args.steps, bf16=args.bf16, eval_images=sizes["eval_images"])
        del plain, model
    for head, run in record["checkpointing"].items():
        base = record["steps"][head]
        run["speed_cost"] = run["step_ms"] / base["step_ms"] - 1  # fraction slower than without
        run["memory_saved_mb"] = base["peak_mem_mb"] - run["peak_mem_mb"]
    return record


def _progress(label: str, run: dict) -> None:
    print(f"  {label}: step {run['step_ms']:.1f} ms ({', '.join(f'{k} {v:.1f}' for k, v in run['split_ms'].items())})"
          f", {run['pairs_per_s']:.2f} pairs/s, {run['achieved_tflops']:.3f} TFLOP/s, "
          f"peak {run['peak_mem_mb']:.0f} MB", flush=True)


def loss_share(presets: dict, args, device, peak_tflops: float) -> dict:
    """Loss share of a step at K = 45, d = 10, batch 60, 128 x 128 (COCO-Stuff-15 head A, issue 5).

    Two shares: the loss forward inside the step split, and the loss alone (forward + backward, the
    implementation `auto` picks) over the step time; the second is the one judged against the target.
    """
    from iicrepro.model import complexity

    cfg = make_config("cocostuff15", mode=args.mode, loss_impl=args.loss_impl, channels_last=args.channels_last)
    batch, size = min(args.batch or cfg.batch_size, cfg.batch_size), args.size or cfg.input_size
    step = presets.get("cocostuff15", {}).get("steps", {}).get("A")
    if step is None:
        plain, model = build_model(cfg, device, checkpointing=False, compile_model=args.compile)
        flops = complexity(plain, cfg.in_channels, size, head="A")["flops"]
        step = bench_step(model, cfg, head="A", batch=batch, size=size, device=device, steps=args.steps,
                          warmup=args.warmup, bf16=args.bf16, flops_per_image=flops, epoch_pairs=None,
                          peak_tflops=peak_tflops)
    p1, p2, mask = loss_inputs(k=cfg.k_a, batch=batch, size=size, device=device, seed=0)
    alone = time_loss(p1, p2, mask, d=cfg.half_side, impl=cfg.loss_impl, repeats=loss_repeats(args))
    return {"k": cfg.k_a, "d": cfg.half_side, "batch_size": batch, "input_size": size, "impl": cfg.loss_impl,
            "step_ms": step["step_ms"], "loss_forward_in_step_ms": step["split_ms"]["loss"],
            "loss_alone_fwd_bwd_ms": alone["fwd_bwd_ms"], "forward_share": step["shares"]["loss"],
            "fwd_bwd_share": alone["fwd_bwd_ms"] / step["step_ms"]}
