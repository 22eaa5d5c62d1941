"""`iicrepro bench`: speed and memory of one training step, of the loss alone, and of evaluation.

Measures, on whatever device it runs, on synthetic tensors of each preset's shape (the paper's data is
not needed): the split of one training step (views, forward, loss, backward, optimiser; CUDA events on the
GPU, wall time on the CPU), pairs/s, the single-head epoch time extrapolated to the paper's epoch sizes,
achieved FLOP/s (forward FLOPs of model.complexity x 3 for forward + backward, two views per pair) against
a dense matmul peak measured in the same run, peak memory, the cost of activation checkpointing; the IIC
loss alone (facts section 5) for K x d per implementation, with agreement checked in the same run;
evaluation throughput (forward + argmax + confusion matrix, facts section 6). Writes one JSON file
(schema: benchmarks/README.md) that the book's Performance page reads; targets of issue 5 are judged
only on CUDA. Reference times of the original are quoted from ../shared/reference/iic-facts.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from iicrepro.config import DATASETS, PRESETS, make_config
from iicrepro.revision import code_revision

SCHEMA_VERSION = 1
CHOICE_DEFAULT = Path(__file__).with_name("loss_choice.json")  # read by iicrepro.loss.choose_impl
PAPER_PRESETS = ("cocostuff3", "cocostuff15", "potsdam3", "potsdam6")
# Pairs per epoch and images per paper-protocol evaluation (facts section 3: COCO-3 36,660 and COCO-15
# 51,804 curated images, evaluated transductively on all of them; Potsdam 8,550 patches, 5,400 labelled).
PAPER_EPOCH = {"cocostuff3": (36660, 36660), "cocostuff15": (51804, 51804),
               "potsdam3": (8550, 5400), "potsdam6": (8550, 5400)}
LOSS_KS = (3, 6, 15, 24, 36, 45)
LOSS_DS = (5, 10)
AGREE_TOL = 1e-5
MASKED_FAMILIES = ("cocostuff", "camvid")  # loss mask from the labels; Potsdam and Dubai: all pixels
MEM_LIMIT_BYTES = 16 * 2**30  # "within 16 GB of GPU memory" (issue 5), read as a 16 GiB card
REFERENCE = {
    "source": "../shared/reference/iic-facts.md sections 5-6 (authors' logs, xu-ji/IIC b7602b7); issue 5",
    "hardware": "2-4 NVIDIA Tesla P40",
    "potsdam_single_head_epoch_min": [13, 23],  # Potsdam-3 ~13 min for 8,550 pairs (issue 5)
    "cocostuff3_single_head_epoch_min": 30,  # 36,660 pairs
    "head_a_k45_epoch_h": 5,  # COCO-15 head A, K = 45
    "eval_min": {"potsdam": 1, "cocostuff3": 6},
}


def _environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"device": device.type, "device_name": torch.cuda.get_device_name(device) if cuda else
            (platform.processor() or platform.machine()), "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],  # other work on the machine inflates CPU timings
            "git_revision": code_revision(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"), "cudnn_benchmark": bool(cuda and torch.backends.cudnn.benchmark)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Phase boundaries: CUDA events on the GPU (no synchronisation inside a step), wall time on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (synchronises once, at the end)."""
        pairs = list(zip(self.marks, self.marks[1:]))
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in pairs]
        return [(b - a) * 1e3 for a, b in pairs]


def _peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20, "kind": "cuda_allocated"}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_mem_mb": rss_mb, "kind": "process_maxrss (monotonic high-water mark of the whole run)"}


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def matmul_peak(device: torch.device, *, dtype: torch.dtype, n: int, seconds: float) -> dict:
    """Dense (n x n) @ (n x n) loop: the device's achievable matmul FLOP/s in `dtype` (2 n^3 per product)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(2):
        a @ b
    _sync(device)
    iters, start = 0, time.perf_counter()
    while iters < 3 or time.perf_counter() - start < seconds:
        for _ in range(5):
            a @ b
        iters += 5
        _sync(device)
    elapsed = time.perf_counter() - start
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "iters": iters,
            "tflops": 2 * n**3 * iters / elapsed / 1e12}


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


# ---------------------------------------------------------------- one training step (DESIGN.md, data flow)

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
    with _autocast(device, bf16):
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
    _reset_memory(device)
    for _ in range(warmup):
        _train_step(model, optimiser, images, mask, cfg=cfg, head=head, clock=Clock(device), bf16=bf16, gen=gen)
    _sync(device)
    splits, wall = [], time.perf_counter()
    for _ in range(steps):
        clock = Clock(device)
        _train_step(model, optimiser, images, mask, cfg=cfg, head=head, clock=clock, bf16=bf16, gen=gen)
        splits.append(clock.durations_ms())
    _sync(device)
    wall_ms = (time.perf_counter() - wall) * 1e3 / steps  # includes host gaps between steps
    split = {name: _median([s[i] for s in splits]) for i, name in enumerate(PHASES)}
    step_ms = sum(split.values())
    flops_pair = 2 * 3 * flops_per_image  # two views; backward ~ 2x forward
    achieved = flops_pair * batch / ((split["forward"] + split["backward"]) / 1e3)
    pairs_s = batch / (wall_ms / 1e3)
    return {"head": head, "k": cfg.k_a if head == "A" else cfg.k_b, "batch_size": batch, "input_size": size,
            "steps": steps, "split_ms": split, "step_ms": step_ms, "wall_step_ms": wall_ms,
            "shares": {k: v / step_ms for k, v in split.items()}, "pairs_per_s": pairs_s,
            "epoch_pairs": epoch_pairs, "epoch_s": epoch_pairs / pairs_s if epoch_pairs else None,
            "fwd_bwd_flops_per_pair": flops_pair, "achieved_tflops": achieved / 1e12,
            "matmul_peak_fraction": achieved / 1e12 / peak_tflops, **_peak_memory(device)}


def _eval_input(views, images: torch.Tensor, *, sobel: bool) -> torch.Tensor:
    """The network's input at evaluation: images (+ Sobel channels), as evaluate.py builds it."""
    if hasattr(views, "network_input"):
        return views.network_input(images, sobel=sobel)
    return torch.cat([images, views.sobel_channels(images)], dim=1) if sobel else images


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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
        with _autocast(device, bf16):
            probs = model(x, head="B")[0]  # (B, K_B, S, S)
        cm.update(probs.argmax(dim=1), labels)

    one_batch()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_batch()
    _sync(device)
    model.train(was_training)
    images_s = batch * steps / (time.perf_counter() - start)
    return {"batch_size": batch, "input_size": size, "images_per_s": images_s, "eval_images": eval_images,
            "eval_s": eval_images / images_s if eval_images else None}


# ---------------------------------------------------------------- the loss alone (facts section 5)

def _loss_inputs(*, k: int, batch: int, size: int, device, seed: int):
    """p1, p2_back (B, K, S, S): confident, correlated probabilities (the loss far from 0), and a mask
    (B, S, S) with ~10% of pixels out."""
    gen = torch.Generator(device=device).manual_seed(seed)
    logits = 3 * torch.randn(batch, k, size, size, device=device, generator=gen)
    p1 = logits.softmax(dim=1)
    p2 = (logits + torch.randn(batch, k, size, size, device=device, generator=gen)).softmax(dim=1)
    mask = torch.rand(batch, size, size, device=device, generator=gen) > 0.1
    return p1, p2, mask


def _time_loss(p1, p2, mask, *, d: int, impl: str, repeats: int) -> dict:
    """Median ms of the loss forward and of forward + backward; the value and gradients of one call."""
    from iicrepro.loss import iic_seg_loss

    device = p1.device
    value, grads = _value_and_grads(p1, p2, mask, d=d, impl=impl)
    result = {"value": value, "grads": grads}
    a, b = p1.detach().requires_grad_(True), p2.detach().requires_grad_(True)
    for name, backward in (("fwd_ms", False), ("fwd_bwd_ms", True)):
        times = []
        for _ in range(repeats):
            clock = Clock(device)
            with torch.set_grad_enabled(backward):
                clock.mark()
                loss = iic_seg_loss(a, b, mask, half_side=d, lam=1.0, impl=impl)[0]
                if backward:
                    loss.backward()
                clock.mark()
            times.append(clock.durations_ms()[0])
        result[name] = _median(times)
    return result


def _loss_impls() -> tuple[str, ...]:
    """Every concrete implementation the loss module offers ("auto" excluded)."""
    from iicrepro import loss as loss_module

    return tuple(i for i in loss_module.LOSS_IMPLS if i != "auto")


def _auto_pick(*, k: int, d: int, batch: int, size: int, device) -> str:
    from iicrepro.loss import choose_impl

    return choose_impl(device.type, k, d, batch, size, size)


def _value_and_grads(p1, p2, mask, *, d: int, impl: str):
    """The loss (lambda 1) and its gradients w.r.t. p1 and p2, in the dtype of p1 and p2."""
    from iicrepro.loss import iic_seg_loss

    a, b = p1.detach().requires_grad_(True), p2.detach().requires_grad_(True)
    loss = iic_seg_loss(a, b, mask, half_side=d, lam=1.0, impl=impl)[0]
    loss.backward()
    return loss.item(), (a.grad, b.grad)


def _differences(run, ref) -> tuple[float, float]:
    """|value - reference value| and max |grad - reference grad| / max |reference grad| over p1, p2."""
    grad = max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(run[1], ref[1]))
    return abs(run[0] - ref[0]), grad


def bench_loss(*, device, batch: int, size: int, repeats: int, ks=LOSS_KS, ds=LOSS_DS) -> dict:
    """Loss alone for every K x d x implementation; agreement of the implementations (to AGREE_TOL).

    Timings are float32, as in training. Agreement is judged in float64 on the same inputs, where what is
    left is the implementations' difference rather than float32 rounding (summing B x H x W products in
    float32 leaves relative gradient differences of order 1e-5 between any two summation orders); the
    float32 differences are recorded beside it.
    """
    impls, records, agreement = _loss_impls(), [], []
    for k in ks:
        for d in ds:
            p1, p2, mask = _loss_inputs(k=k, batch=batch, size=size, device=device, seed=k * 100 + d)
            runs = {impl: _time_loss(p1, p2, mask, d=d, impl=impl, repeats=repeats) for impl in impls}
            exact = {impl: _value_and_grads(p1.double(), p2.double(), mask, d=d, impl=impl) for impl in impls}
            ref = runs[impls[0]]
            for impl, run in runs.items():
                records.append({"k": k, "d": d, "impl": impl, "fwd_ms": run["fwd_ms"],
                                "fwd_bwd_ms": run["fwd_bwd_ms"], "value": run["value"]})
                if impl == impls[0]:
                    continue
                value_diff, grad_diff = _differences(exact[impl], exact[impls[0]])
                value32, grad32 = _differences((run["value"], run["grads"]), (ref["value"], ref["grads"]))
                agreement.append({"k": k, "d": d, "impl": impl, "reference_impl": impls[0], "dtype": "float64",
                                  "abs_diff_value": value_diff, "rel_diff_grad": grad_diff,
                                  "float32_abs_diff_value": value32, "float32_rel_diff_grad": grad32,
                                  "ok": value_diff <= AGREE_TOL and grad_diff <= AGREE_TOL})
            del exact
    auto = [{"k": k, "d": d, "impl": _auto_pick(k=k, d=d, batch=batch, size=size, device=device)}
            for k in ks for d in ds]
    return {"batch_size": batch, "input_size": size, "repeats": repeats, "impls": list(impls),
            "dtype": "float32 (timings); float64 (agreement)", "mask": "random, ~90% of pixels in",
            "tolerance": AGREE_TOL, "records": records, "agreement": agreement,
            "all_agree": all(a["ok"] for a in agreement), "auto": auto, "ratios": _impl_ratios(records, impls)}


def _impl_ratios(records: list[dict], impls) -> list[dict]:
    """Per (K, d): time of each implementation / time of the first one (forward + backward)."""
    by_key = {(r["k"], r["d"], r["impl"]): r["fwd_bwd_ms"] for r in records}
    keys = sorted({(r["k"], r["d"]) for r in records})
    return [{"k": k, "d": d, **{f"{impl}/{impls[0]}": by_key[(k, d, impl)] / by_key[(k, d, impls[0])]
                                for impl in impls[1:]}} for k, d in keys]


# ---------------------------------------------------------------- the loss at every Table-4 head (issue 14)

# (K, side, d) of every Table-4 head: COCO-Stuff heads at 128 x 128, d = 10; Potsdam heads at 200 x 200,
# d in {5, 10} (facts sections 3 and 5); batch 16 for all (the "batch 16 or more").
TABLE4_CASES = (((3, 128, 10), (15, 128, 10), (45, 128, 10))
                + tuple((k, 200, d) for k in (3, 6, 24, 36) for d in (5, 10)))
TABLE4_BATCH = 16
TABLE4_IMPLS = ("conv", "fft", "fftmm")  # the authors' form first: the reference of every ratio
TABLE4_TARGET = 20.0  # conv time / new time, forward + backward, same run (issue 14)


def _fwd_bwd(p1, p2, mask, *, d: int, impl: str):
    """One forward + backward of the loss (lambda 1): (ms, value, (grad p1, grad p2))."""
    from iicrepro.loss import iic_seg_loss

    a, b = p1.detach().requires_grad_(True), p2.detach().requires_grad_(True)
    clock = Clock(p1.device)
    clock.mark()
    loss = iic_seg_loss(a, b, mask, half_side=d, lam=1.0, impl=impl)[0]
    loss.backward()
    clock.mark()
    return clock.durations_ms()[0], loss.item(), (a.grad, b.grad)


def _interleaved(p1, p2, mask, *, d: int, repeats: dict) -> tuple[dict, dict]:
    """Median forward + backward ms per implementation over rounds that interleave them (a drift in the
    machine's load hits every implementation alike), and each one's value and gradients of its first call.

    repeats: {impl: timed calls}; an implementation with fewer calls takes part in the first rounds only.
    """
    times, first = {impl: [] for impl in repeats}, {}
    for rnd in range(max(repeats.values())):
        for impl, count in repeats.items():
            if rnd < count:
                ms, value, grads = _fwd_bwd(p1, p2, mask, d=d, impl=impl)
                times[impl].append(ms)
                first.setdefault(impl, (value, grads))
    return {impl: _median(t) for impl, t in times.items()}, first


def _table4_agreement(p1, p2, mask, *, d: int, impls) -> dict:
    """Float64 |value - conv value| and max relative gradient difference to conv, per implementation."""
    exact = {impl: _value_and_grads(p1.double(), p2.double(), mask, d=d, impl=impl) for impl in impls}
    diffs = {impl: _differences(exact[impl], exact[TABLE4_IMPLS[0]]) for impl in impls[1:]}
    return {impl: {"abs_diff_value": v, "rel_diff_grad": g, "ok": v <= AGREE_TOL and g <= AGREE_TOL}
            for impl, (v, g) in diffs.items()}


def table4_case(k: int, size: int, d: int, *, batch: int, device, repeats: int, conv_repeats: int,
                agree_batch: int, choice: dict | None) -> dict:
    """One Table-4 head: conv vs the FFT forms, forward + backward, float32, interleaved in one run.

    choice: the loss-choice table to update with this case's fastest before `auto` is timed (None: `auto`
    reads the committed table). Agreement is judged in float64 against conv on the first `agree_batch`
    images (conv in float64 is slow); the float32 differences of the timed calls are recorded beside it.
    """
    p1, p2, mask = _loss_inputs(k=k, batch=batch, size=size, device=device, seed=k * 100 + d)
    for impl in TABLE4_IMPLS[1:]:
        _fwd_bwd(p1, p2, mask, d=d, impl=impl)  # warm-up: allocator, FFT plans, threads
    counts = {impl: conv_repeats if impl == "conv" else repeats for impl in TABLE4_IMPLS}
    ms, first = _interleaved(p1, p2, mask, d=d, repeats=counts)
    fastest = min(ms, key=ms.get)
    if choice is not None:
        _set_choice(choice, device=device.type, k=k, d=d, batch=batch, size=size, times=ms)
    pick = choose_impl_for(k=k, d=d, batch=batch, size=size, device=device, table=choice)
    ms["auto"] = _interleaved(p1, p2, mask, d=d, repeats={pick: repeats})[0][pick]
    conv = ms["conv"]
    float32 = {impl: dict(zip(("abs_diff_value", "rel_diff_grad"), _differences(first[impl], first["conv"])))
               for impl in TABLE4_IMPLS[1:]}
    agree = _table4_agreement(p1[:agree_batch], p2[:agree_batch], mask[:agree_batch], d=d, impls=TABLE4_IMPLS)
    return {"k": k, "d": d, "input_size": size, "batch_size": batch, "fwd_bwd_ms": ms, "fastest": fastest,
            "auto_impl": pick, "speedup": {impl: conv / t for impl, t in ms.items() if impl != "conv"},
            "meets_target": conv / ms["fftmm"] >= TABLE4_TARGET and conv / ms["auto"] >= TABLE4_TARGET,
            "repeats": counts, "agreement_float64": {"batch_size": agree_batch, **agree},
            "agreement_float32": float32}


def choose_impl_for(*, k: int, d: int, batch: int, size: int, device, table: dict | None) -> str:
    from iicrepro.loss import choose_impl

    return choose_impl(device.type, k, d, batch, size, size, table=table)


def _set_choice(table: dict, *, device: str, k: int, d: int, batch: int, size: int, times: dict) -> None:
    """Put one measured shape into the loss-choice table (replacing the same device and shape)."""
    entry = {"device": device, "k": k, "d": d, "batch": batch, "height": size, "width": size,
             "fastest": min(times, key=times.get), "fwd_bwd_ms": {i: round(t, 3) for i, t in times.items()}}
    same = ("device", "k", "d", "batch", "height", "width")
    table["entries"] = [e for e in table.get("entries", []) if any(e[f] != entry[f] for f in same)] + [entry]


def bench_loss_table4(*, device, batch: int, repeats: int, conv_repeats: int, agree_batch: int,
                      cases=TABLE4_CASES, choice: dict | None = None) -> dict:
    """Every Table-4 head (``table4_case``); `choice` collects the measured fastest for `auto`."""
    records = []
    for k, size, d in cases:
        records.append(table4_case(k, size, d, batch=batch, device=device, repeats=repeats,
                                   conv_repeats=conv_repeats, agree_batch=agree_batch, choice=choice))
        r = records[-1]
        print(f"  loss K={k} {size}x{size} d={d}: " + ", ".join(f"{i} {t:.1f} ms" for i, t in
              r["fwd_bwd_ms"].items()) + f"; auto -> {r['auto_impl']}; conv/fftmm {r['speedup']['fftmm']:.1f}x",
              flush=True)
    return {"batch_size": batch, "impls": list(TABLE4_IMPLS), "repeats": repeats, "conv_repeats": conv_repeats,
            "timing": "forward + backward, float32, median over rounds interleaving the implementations",
            "mask": "random, ~90% of pixels in", "target_speedup": TABLE4_TARGET, "tolerance": AGREE_TOL,
            "cases": records, "all_meet_target": all(r["meets_target"] for r in records),
            "all_agree": all(a["ok"] for r in records for i, a in r["agreement_float64"].items()
                             if i != "batch_size")}


def table4_targets(table4: dict, *, applicable: bool = True) -> list[dict]:
    """Issue 14's loss target per head: conv / fftmm and conv / auto >= 20, judged on any device at the
    Table-4 sizes (not applicable to reduced sizes)."""
    return [{"name": f"loss_k{r['k']}_{r['input_size']}_d{r['d']}_speedup",
             "what": f"conv / fftmm (auto: {r['auto_impl']}, {r['speedup']['auto']:.1f}x), forward + backward, "
                     f"K = {r['k']}, {r['input_size']} x {r['input_size']}, d = {r['d']}, batch {r['batch_size']}",
             "target": f">= {TABLE4_TARGET:g}", "measured": r["speedup"]["fftmm"],
             "status": ("pass" if r["meets_target"] else "fail") if applicable else "not applicable (reduced "
             "sizes)"} for r in table4["cases"]]


def write_loss_choice(table: dict, path: Path, *, source: str) -> None:
    """Write the loss-choice table (iicrepro/loss_choice.json) that ``choose_impl`` reads."""
    table["note"] = ("Measured fastest loss implementation per device type and shape (forward + backward); "
                     "written by `iicrepro bench --loss-table4 --write-loss-choice`; read by "
                     "iicrepro.loss.choose_impl (nearest shape in log space).")
    table["source"] = source
    table["entries"] = sorted(table.get("entries", []), key=lambda e: (e["device"], e["height"], e["k"], e["d"]))
    write_json_atomic(path, table)


# ---------------------------------------------------------------- presets, targets, the JSON file

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


def _build_model(cfg, device, *, checkpointing: bool, compile_model: bool):
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
        plain, model = _build_model(cfg, device, checkpointing=ckpt, compile_model=args.compile)
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
        plain, model = _build_model(cfg, device, checkpointing=False, compile_model=args.compile)
        flops = complexity(plain, cfg.in_channels, size, head="A")["flops"]
        step = bench_step(model, cfg, head="A", batch=batch, size=size, device=device, steps=args.steps,
                          warmup=args.warmup, bf16=args.bf16, flops_per_image=flops, epoch_pairs=None,
                          peak_tflops=peak_tflops)
    p1, p2, mask = _loss_inputs(k=cfg.k_a, batch=batch, size=size, device=device, seed=0)
    alone = _time_loss(p1, p2, mask, d=cfg.half_side, impl=cfg.loss_impl, repeats=_repeats(args))
    return {"k": cfg.k_a, "d": cfg.half_side, "batch_size": batch, "input_size": size, "impl": cfg.loss_impl,
            "step_ms": step["step_ms"], "loss_forward_in_step_ms": step["split_ms"]["loss"],
            "loss_alone_fwd_bwd_ms": alone["fwd_bwd_ms"], "forward_share": step["shares"]["loss"],
            "fwd_bwd_share": alone["fwd_bwd_ms"] / step["step_ms"]}


def _slowest(presets: dict, name: str, field: str):
    """The largest `field` over the heads measured for preset `name` (None when not measured)."""
    values = [run[field] for run in presets.get(name, {}).get("steps", {}).values() if run[field] is not None]
    return max(values) if values else None


def _memory_gib(presets: dict, name: str):
    """Peak memory of the paper batch (worst head), the lesser of with / without checkpointing, GiB."""
    worst = [max(run["peak_mem_mb"] for run in presets.get(name, {}).get(key, {}).values())
             for key in ("steps", "checkpointing") if presets.get(name, {}).get(key)]
    return min(worst) / 1024 if worst else None


def targets(result: dict, *, applicable: bool, reason: str) -> list[dict]:
    """Issue 5's targets as target vs measured; pass/fail only when `applicable` (CUDA, paper sizes)."""
    presets, share = result["presets"], result.get("loss_share") or {}
    fractions = [run["matmul_peak_fraction"] for name in PAPER_PRESETS
                 for run in presets.get(name, {}).get("steps", {}).values()]
    items = [("potsdam3_epoch_s", "slowest single-head epoch, Potsdam-3 preset (8,550 pairs)", "<=", 30.0,
              _slowest(presets, "potsdam3", "epoch_s")),
             ("cocostuff3_epoch_s", "slowest single-head epoch, COCO-Stuff-3 preset (36,660 pairs)", "<=", 60.0,
              _slowest(presets, "cocostuff3", "epoch_s")),
             ("loss_share", "loss (fwd + bwd) / step at K = 45, d = 10, batch 60, 128 x 128", "<", 0.10,
              share.get("fwd_bwd_share")),
             ("matmul_peak_fraction", "least fraction of the matmul peak in fwd + bwd, paper presets", ">=",
              0.40, min(fractions) if fractions else None)]
    items += [(f"memory_{name}_gib", f"peak memory of the paper batch, {name} (least of with/without "
               "checkpointing, worst head)", "<=", MEM_LIMIT_BYTES / 2**30, _memory_gib(presets, name))
              for name in PAPER_PRESETS]
    compare = {"<=": lambda m, t: m <= t, "<": lambda m, t: m < t, ">=": lambda m, t: m >= t}
    out = []
    for key, what, op, target, measured in items:
        if not applicable:
            status = f"not applicable ({reason})"
        elif measured is None:
            status = "not measured"
        else:
            status = "pass" if compare[op](measured, target) else "fail"
        out.append({"name": key, "what": what, "target": f"{op} {target:g}", "measured": measured,
                    "status": status})
    return out


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename (no half-written result files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iicrepro bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="all", help="'all', 'paper', 'offline' or a comma-separated list")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the network (issue 5's targets)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes for CI: batch 2, 16 x 16 (loss: batch 1, 24 x 24), one step")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/"
                   "<device>-<date>.json)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 10; tiny 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    p.add_argument("--checkpointing", nargs="?", const="all", default="", metavar="PRESETS",
                   help="also measure with activation checkpointing (all presets, or a comma-separated list)")
    p.add_argument("--heads", default="A,B", help="heads whose training step is measured")
    p.add_argument("--batch", type=int, default=None, help="cap every batch (recorded as a reduction)")
    p.add_argument("--size", type=int, default=None, help="input size for every preset (a reduction)")
    p.add_argument("--loss-batch", type=int, default=None, help="batch of the loss sweep (default 60)")
    p.add_argument("--loss-size", type=int, default=None, help="side of the loss sweep (default 128)")
    p.add_argument("--skip-loss", action="store_true", help="no loss sweep")
    p.add_argument("--loss-table4", action="store_true", help="only the loss at every Table-4 head: conv vs "
                   "fft vs fftmm vs auto, batch 16 (issue 14; --loss-batch/--loss-size do not apply); writes "
                   "<device>-loss-table4-<date>.json")
    p.add_argument("--conv-repeats", type=int, default=1, help="timed conv calls per Table-4 head (default 1)")
    p.add_argument("--write-loss-choice", nargs="?", const=str(CHOICE_DEFAULT), default=None, metavar="PATH",
                   help="with --loss-table4: write the measured fastest per head into the table `auto` reads "
                   "(default iicrepro/loss_choice.json)")
    p.add_argument("--mode", default="faithful", choices=("faithful", "clean"))
    p.add_argument("--loss-impl", default="auto", help="loss implementation inside the training step")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (CPU or CUDA)")
    p.add_argument("--precision", action="store_true", help="only one training step in float32 vs float32 + "
                   "channels_last vs bf16 + channels_last vs + torch.compile, at the CPU scale's and the presets' "
                   "crops (issue 14; --presets, --batch, --steps, --warmup apply); writes <device>-precision-<date>.json")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's; tiny 1)")
    p.add_argument("--peak-n", type=int, default=None, help="side of the matmul-peak matrices")
    return p


def _resolve(args) -> tuple[torch.device, list[str]]:
    """Device, preset list and the size defaults (tiny or full) filled in."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available: use --device cpu or auto")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and
                                                              torch.cuda.is_available()) else "cpu")
    groups = {"all": list(PRESETS), "paper": list(PAPER_PRESETS),
              "offline": [n for n in PRESETS if DATASETS[PRESETS[n]["dataset"]].offline]}
    names = groups.get(args.presets) or [n.strip() for n in args.presets.split(",") if n.strip()]
    ckpt = names if args.checkpointing == "all" else [n for n in args.checkpointing.split(",") if n]
    args.checkpointing = [n for n in names if n in ckpt]
    unknown = sorted((set(names) | set(ckpt)) - set(PRESETS))
    if unknown:
        raise ValueError(f"unknown preset(s) {unknown}: expected 'all', 'paper', 'offline' or names from "
                         f"{sorted(PRESETS)}")
    args.heads = [h.strip().upper() for h in args.heads.split(",") if h.strip()]
    if not set(args.heads) <= {"A", "B"} or not args.heads:
        raise ValueError(f"--heads: expected a comma-separated subset of A,B, got {args.heads}")
    tiny = dict(steps=1, warmup=1, batch=2, size=16, loss_batch=1, loss_size=24, peak_n=512, threads=1)
    full = dict(steps=10, warmup=3, batch=None, size=None, loss_batch=60, loss_size=128, threads=0,
                peak_n=8192 if device.type == "cuda" else 2048)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return device, names


def _reductions(args, device) -> list[str]:
    """What this run measured at less than the paper's sizes, in words (empty: paper sizes)."""
    out = []
    if args.batch:
        out.append(f"batch capped at {args.batch} (paper batch sizes 60-120); epoch times extrapolated from it")
    if args.size:
        out.append(f"input size {args.size} for every preset (paper 128 / 200)")
    if (args.loss_batch, args.loss_size) != (60, 128):
        out.append(f"loss sweep at batch {args.loss_batch}, {args.loss_size} x {args.loss_size} (paper-scale: 60, 128)")
    if args.heads != ["A", "B"]:
        out.append(f"only head(s) {','.join(args.heads)} measured")
    return out


def _repeats(args) -> int:
    """Timed calls per loss measurement: the step count, at least 3 (1 with --tiny)."""
    return max(args.steps, 1 if args.tiny else 3)


def _peaks(device, args) -> dict:
    dtypes = [torch.bfloat16, torch.float32] if device.type == "cuda" or args.bf16 else [torch.float32]
    seconds = 0.2 if args.tiny else 2.0
    return {str(d).removeprefix("torch."): matmul_peak(device, dtype=d, n=args.peak_n, seconds=seconds)
            for d in dtypes}


def run_loss_table4(args, device, result: dict) -> dict:
    """`--loss-table4`: the loss alone at every Table-4 head; optionally rewrites the loss-choice table."""
    choice = None
    if args.write_loss_choice:
        path = Path(args.write_loss_choice)
        choice = json.loads(path.read_text()) if path.is_file() else {}
    batch, cases = TABLE4_BATCH, TABLE4_CASES  # the paper's sizes; --tiny: batch 1, sides 24 (CI)
    if args.tiny:
        batch, cases = 1, [(k, 24, d) for k, _, d in TABLE4_CASES]
        result["reductions"] = ["loss at batch 1, 24 x 24 (--tiny); Table-4 sizes: batch 16, 128 / 200"]
    table4 = bench_loss_table4(device=device, batch=batch, repeats=_repeats(args), conv_repeats=args.conv_repeats,
                               agree_batch=min(2, batch), cases=cases, choice=choice)
    result["loss_table4"] = table4
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    result["targets"] = {"note": "issue 14: conv / new >= 20 at every Table-4 head, same run, any device",
                         "items": table4_targets(table4, applicable=not result["reductions"])}
    if choice is not None and not result["reductions"]:
        write_loss_choice(choice, Path(args.write_loss_choice), source=f"iicrepro bench --loss-table4, revision "
                          f"{result['env']['git_revision']}, {result['env']['date']}")
        table4["choice_table"] = str(args.write_loss_choice)
    return result


def run(args) -> dict:
    """Every measurement of one `iicrepro bench` call; returns the JSON payload."""
    device, names = _resolve(args)
    if args.threads:  # 0: torch's default
        torch.set_num_threads(args.threads)
    if args.precision:
        return run_precision(args, device, names)
    if args.loss_table4:
        result = {"schema_version": SCHEMA_VERSION, "data": "synthetic", "env": _environment(device),
                  "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "reductions": [], "reference": REFERENCE}
        print(f"iicrepro bench --loss-table4 on {result['env']['device_name']} ({device}), torch "
              f"{torch.__version__}, revision {result['env']['git_revision']}", flush=True)
        return run_loss_table4(args, device, result)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    result = {"schema_version": SCHEMA_VERSION, "data": "synthetic", "env": _environment(device),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "reductions": _reductions(args, device), "reference": REFERENCE}
    print(f"iicrepro bench on {result['env']['device_name']} ({device}), torch {torch.__version__}, "
          f"revision {result['env']['git_revision']}", flush=True)
    result["matmul_peak"] = _peaks(device, args)
    compute = "bfloat16" if args.bf16 else "float32"
    peak = result["matmul_peak"][compute]["tflops"]
    result["matmul_peak"]["compared_with"] = compute
    print(f"  matmul peak ({compute}, n={args.peak_n}): {peak:.3f} TFLOP/s", flush=True)
    result["presets"] = {name: bench_preset(name, args, device, peak) for name in names}
    result["loss_share"] = loss_share(result["presets"], args, device, peak)
    if not args.skip_loss:
        result["loss"] = bench_loss(device=device, batch=args.loss_batch, size=args.loss_size,
                                    repeats=_repeats(args))
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    applicable = device.type == "cuda" and not args.tiny and not args.batch and not args.size
    reason = "device is not CUDA" if device.type != "cuda" else "reduced sizes"
    result["targets"] = {"bf16": args.bf16, "note": "issue 5 judges the targets on one H100/H200 with bf16 "
                         "autocast", "items": targets(result, applicable=applicable, reason=reason)}
    return result


def run_precision(args, device, names: list[str]) -> dict:
    """`--precision`: iicrepro.bench_precision over the presets named (default camvid3, dubai3)."""
    from iicrepro.bench_precision import bench_precision, precision_targets

    presets = names if args.presets != "all" else ["camvid3", "dubai3"]
    result = {"schema_version": SCHEMA_VERSION, "data": "synthetic", "env": _environment(device),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "reductions": [f"batch {args.batch or 'by crop'}, head B only"], "reference": REFERENCE}
    print(f"iicrepro bench --precision on {result['env']['device_name']} ({device}), revision "
          f"{result['env']['git_revision']}", flush=True)
    result["matmul_peak"] = _peaks(device, args)
    peak = result["matmul_peak"]["float32"]["tflops"]
    tiny = dict(crops_for=lambda preset: [(16, 2)], variants=("float32", "float32+cl", "bf16+cl"))
    result["precision"] = bench_precision(presets=presets, device=device, steps=args.steps, warmup=args.warmup,
                                          batch_for=lambda size: args.batch or (2 if size <= 100 else 1),
                                          peak_tflops=peak, **(tiny if args.tiny else {}))
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    result["targets"] = {"note": "issue 14: a training step >= 4x faster than float32 at 64 and 128, this machine",
                         "items": precision_targets(result["precision"])}
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `iicrepro bench`: run, print a summary, write the JSON file atomically."""
    args = _parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        result = run(args)
    finally:
        torch.set_num_threads(threads)  # --threads must not outlive the call (tests share the process)
    date = result["env"]["date"][:10]
    kind = "-loss-table4" if args.loss_table4 else "-precision" if args.precision else ""
    out = args.out or Path("benchmarks/results") / f"{result['env']['device']}{kind}-{date}.json"
    write_json_atomic(Path(out), result)
    for item in result["targets"]["items"]:
        print(f"  target {item['name']} {item['target']}: measured {item['measured']}, {item['status']}")
    print(f"wrote {out}")
    return 0
