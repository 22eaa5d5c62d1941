"""The IIC loss alone (facts section 5): every implementation at K x d, timed, and their agreement checked
in the same run (float64, to AGREE_TOL)."""
from __future__ import annotations

import torch

from iicrepro.bench.common import Clock, median

LOSS_KS = (3, 6, 15, 24, 36, 45)
LOSS_DS = (5, 10)
AGREE_TOL = 1e-5


def loss_inputs(*, k: int, batch: int, size: int, device, seed: int):
    """p1, p2_back (B, K, S, S): confident, correlated probabilities (the loss far from 0), and a mask
    (B, S, S) with ~10% of pixels out."""
    gen = torch.Generator(device=device).manual_seed(seed)
    logits = 3 * torch.randn(batch, k, size, size, device=device, generator=gen)
    p1 = logits.softmax(dim=1)
    p2 = (logits + torch.randn(batch, k, size, size, device=device, generator=gen)).softmax(dim=1)
    mask = torch.rand(batch, size, size, device=device, generator=gen) > 0.1
    return p1, p2, mask


def time_loss(p1, p2, mask, *, d: int, impl: str, repeats: int) -> dict:
    """Median ms of the loss forward and of forward + backward; the value and gradients of one call."""
    from iicrepro.loss import iic_seg_loss

    device = p1.device
    value, grads = value_and_grads(p1, p2, mask, d=d, impl=impl)
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
        result[name] = median(times)
    return result


def _loss_impls() -> tuple[str, ...]:
    """Every concrete implementation the loss module offers ("auto" excluded)."""
    from iicrepro import loss as loss_module

    return tuple(i for i in loss_module.LOSS_IMPLS if i != "auto")


def _auto_pick(*, k: int, d: int, batch: int, size: int, device) -> str:
    from iicrepro.loss import choose_impl

    return choose_impl(device.type, k, d, batch, size, size)


def value_and_grads(p1, p2, mask, *, d: int, impl: str):
    """The loss (lambda 1) and its gradients w.r.t. p1 and p2, in the dtype of p1 and p2."""
    from iicrepro.loss import iic_seg_loss

    a, b = p1.detach().requires_grad_(True), p2.detach().requires_grad_(True)
    loss = iic_seg_loss(a, b, mask, half_side=d, lam=1.0, impl=impl)[0]
    loss.backward()
    return loss.item(), (a.grad, b.grad)


def differences(run, ref) -> tuple[float, float]:
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
            p1, p2, mask = loss_inputs(k=k, batch=batch, size=size, device=device, seed=k * 100 + d)
            runs = {impl: time_loss(p1, p2, mask, d=d, impl=impl, repeats=repeats) for impl in impls}
            exact = {impl: value_and_grads(p1.double(), p2.double(), mask, d=d, impl=impl) for impl in impls}
            ref = runs[impls[0]]
            for impl, run in runs.items():
                records.append({"k": k, "d": d, "impl": impl, "fwd_ms": run["fwd_ms"],
                                "fwd_bwd_ms": run["fwd_bwd_ms"], "value": run["value"]})
                if impl == impls[0]:
                    continue
                value_diff, grad_diff = differences(exact[impl], exact[impls[0]])
                value32, grad32 = differences((run["value"], run["grads"]), (ref["value"], ref["grads"]))
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


def loss_repeats(args) -> int:
    """Timed calls per loss measurement: the step count, at least 3 (1 with --tiny)."""
    return max(args.steps, 1 if args.tiny else 3)
