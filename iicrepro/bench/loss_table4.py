"""The loss at every Table-4 head (issue 14): conv against the FFT forms, interleaved in one run, and the
loss-choice table (iicrepro/loss_choice.json) that ``iicrepro.loss.choose_impl`` reads for `auto`."""
from __future__ import annotations

from pathlib import Path

from iicrepro.bench.common import Clock, median, write_json_atomic
from iicrepro.bench.loss_sweep import AGREE_TOL, differences, loss_inputs, value_and_grads

CHOICE_DEFAULT = Path(__file__).parents[1] / "loss_choice.json"  # read by iicrepro.loss.choose_impl

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
    return {impl: median(t) for impl, t in times.items()}, first


def _table4_agreement(p1, p2, mask, *, d: int, impls) -> dict:
    """Float64 |value - conv value| and max relative gradient difference to conv, per implementation."""
    exact = {impl: value_and_grads(p1.double(), p2.double(), mask, d=d, impl=impl) for impl in impls}
    diffs = {impl: differences(exact[impl], exact[TABLE4_IMPLS[0]]) for impl in impls[1:]}
    return {impl: {"abs_diff_value": v, "rel_diff_grad": g, "ok": v <= AGREE_TOL and g <= AGREE_TOL}
            for impl, (v, g) in diffs.items()}


def table4_case(k: int, size: int, d: int, *, batch: int, device, repeats: int, conv_repeats: int,
                agree_batch: int, choice: dict | None) -> dict:
    """One Table-4 head: conv vs the FFT forms, forward + backward, float32, interleaved in one run.

    choice: the loss-choice table to update with this case's fastest before `auto` is timed (None: `auto`
    reads the committed table). Agreement is judged in float64 against conv on the first `agree_batch`
    images (conv in float64 is slow); the float32 differences of the timed calls are recorded beside it.
    """
    p1, p2, mask = loss_inputs(k=k, batch=batch, size=size, device=device, seed=k * 100 + d)
    for impl in TABLE4_IMPLS[1:]:
        _fwd_bwd(p1, p2, mask, d=d, impl=impl)  # warm-up: allocator, FFT plans, threads
    counts = {impl: conv_repeats if impl == "conv" else repeats for impl in TABLE4_IMPLS}
    ms, first = _interleaved(p1, p2, mask, d=d, repeats=counts)
    fastest = min(ms, key=ms.get)
    if choice is not None:
        set_choice(choice, device=device.type, k=k, d=d, batch=batch, size=size, times=ms)
    pick = choose_impl_for(k=k, d=d, batch=batch, size=size, device=device, table=choice)
    ms["auto"] = _interleaved(p1, p2, mask, d=d, repeats={pick: repeats})[0][pick]
    conv = ms["conv"]
    float32 = {impl: dict(zip(("abs_diff_value", "rel_diff_grad"), differences(first[impl], first["conv"])))
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


def set_choice(table: dict, *, device: str, k: int, d: int, batch: int, size: int, times: dict) -> None:
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


def write_loss_choice(table: dict, path: Path, *, source: str) -> None:
    """Write the loss-choice table (iicrepro/loss_choice.json) that ``choose_impl`` reads."""
    table["note"] = ("Measured fastest loss implementation per device type and shape (forward + backward); "
                     "written by `iicrepro bench --loss-table4 --write-loss-choice`; read by "
                     "iicrepro.loss.choose_impl (nearest shape in log space).")
    table["source"] = source
    table["entries"] = sorted(table.get("entries", []), key=lambda e: (e["device"], e["height"], e["k"], e["d"]))
    write_json_atomic(path, table)
