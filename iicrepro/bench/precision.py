"""`iicrepro bench --precision`: one Net10a training step in float32 against bf16 autocast (issue 14 item 3).

Per preset and crop (the CPU scale's, half the preset's, and the preset's own), per variant:
  float32                 the baseline (what the original computes)
  float32+cl              channels_last memory format
  bf16+cl                 bf16 autocast (network only; the loss stays float32) + channels_last
  float32+cl+compile      torch.compile of the network, kept in training only if it measures faster
the median split of one step (views, forward, loss, backward, optimiser; iicrepro.bench.step.bench_step)
and its speed relative to float32. Where bf16 is emulated (no AMX / AVX512-BF16 on a CPU) it is far slower; the
file records which bf16 units torch reports (iicrepro.precision) so the numbers can be read.
"""
from __future__ import annotations

import time

from iicrepro.bench.step import bench_step, build_model
from iicrepro.config import make_config
from iicrepro.precision import cpu_bf16_units

VARIANTS = {
    "float32": dict(bf16=False, channels_last=False, compile=False),
    "float32+cl": dict(bf16=False, channels_last=True, compile=False),
    "bf16+cl": dict(bf16=True, channels_last=True, compile=False),
    "float32+cl+compile": dict(bf16=False, channels_last=True, compile=True),
}
TARGET = 4.0  # issue 14: a whole training step at least 4x faster than float32, at 64x64 and at 128x128


def preset_crops(preset: str) -> list[tuple[int, int]]:
    """(crop, d) of the CPU scale (half) and of the preset itself: camvid3 -> [(64, 5), (128, 10)]."""
    from iicrepro.study import scaled

    cfg, half = make_config(preset), scaled({"preset": preset}, {"scale": 0.5})
    return [(half["input_size"], half["half_side"]), (cfg.input_size, cfg.half_side)]


def bench_case(preset: str, *, size: int, d: int, batch: int, variant: str, head: str, device,
               steps: int, warmup: int, peak_tflops: float) -> dict:
    """One (preset, crop, variant): bench_step's record plus the time spent compiling (compile only)."""
    from iicrepro.model import complexity

    options = VARIANTS[variant]
    cfg = make_config(preset, half_side=d, channels_last=options["channels_last"], loss_impl="auto")
    plain, model = build_model(cfg, device, checkpointing=False, compile_model=options["compile"])
    flops = complexity(plain, cfg.in_channels, size, head=head)["flops"]
    start = time.perf_counter()
    record = bench_step(model, cfg, head=head, batch=batch, size=size, device=device, steps=steps,
                        warmup=warmup, bf16=options["bf16"], flops_per_image=flops, epoch_pairs=None,
                        peak_tflops=peak_tflops)
    record["total_s"] = time.perf_counter() - start  # warm-up (and compilation) included
    return {"preset": preset, "variant": variant, "d": d, **options, **record}


def precision_choices(*, variants: str, crops: str) -> dict:
    """bench_precision's `variants` and `crops_for` from `--variants a,b` ('all': every one; float32, the reference
    of every ratio, is always added) and `--crops` ('both', 'cpu': the CPU scale's crop only, 'preset': the
    preset's own only); an unknown variant is an error naming it."""
    names = list(VARIANTS) if variants == "all" else [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ValueError(f"--variants: unknown {unknown or variants!r}; expected 'all' or a comma-separated subset "
                         f"of {', '.join(VARIANTS)}")
    names = list(dict.fromkeys(["float32", *names]))  # float32 is every ratio's reference: always measured
    picks = {"both": slice(0, 2), "cpu": slice(0, 1), "preset": slice(1, 2)}
    if crops not in picks:
        raise ValueError(f"--crops: expected both, cpu or preset, got {crops!r}")
    pick = picks[crops]
    return {"variants": tuple(names), "crops_for": lambda preset: preset_crops(preset)[pick]}


def bench_precision(*, presets: list[str], device, batch_for, steps: int, warmup: int, head: str = "B",
                    variants=tuple(VARIANTS), peak_tflops: float, crops_for=preset_crops, progress=print) -> dict:
    """Every (preset, crop, variant); batch_for(size) -> batch, crops_for(preset) -> [(crop, d)]. Ratios are
    to float32 at the same case."""
    cases = []
    for preset in presets:
        for index, (size, d) in enumerate(crops_for(preset)):
            # torch.compile is tried at the first crop only (the CPU scale's, unless --crops preset)
            for variant in [v for v in variants if index == 0 or not VARIANTS[v]["compile"]]:
                case = bench_case(preset, size=size, d=d, batch=batch_for(size), variant=variant, head=head,
                                  device=device, steps=steps, warmup=warmup, peak_tflops=peak_tflops)
                cases.append(case)
                progress(f"  {preset} {size}x{size} {variant}: step {case['step_ms']:.0f} ms", flush=True)
    _add_speedups(cases)
    return {"head": head, "steps": steps, "warmup": warmup, "variants": list(variants), "target_speedup": TARGET,
            "cpu_bf16_units": cpu_bf16_units() if device.type == "cpu" else None, "cases": cases}


def _add_speedups(cases: list[dict]) -> None:
    base = {(c["preset"], c["input_size"]): c["step_ms"] for c in cases if c["variant"] == "float32"}
    for case in cases:
        reference = base.get((case["preset"], case["input_size"]))
        case["speedup_vs_float32"] = reference / case["step_ms"] if reference else None


def precision_targets(table: dict) -> list[dict]:
    """Issue 14: the fastest variant's whole step >= 4x float32's, at 64 and at 128 (CamVid-3's crops)."""
    items = []
    for size in (64, 128):
        cases = [c for c in table["cases"] if c["input_size"] == size and c["variant"] != "float32"]
        if not cases:
            continue
        best = max(cases, key=lambda c: c["speedup_vs_float32"] or 0)
        items.append({"name": f"step_speedup_{size}", "what": f"float32 step / fastest variant's ({best['variant']}),"
                      f" {best['preset']}, {size} x {size}, batch {best['batch_size']}", "target": f">= {TARGET}",
                      "measured": best["speedup_vs_float32"],
                      "status": "pass" if (best["speedup_vs_float32"] or 0) >= TARGET else "fail"})
    return items
