"""The issues' targets as target vs measured: issue 5's (epoch times, loss share, matmul-peak fraction,
memory; judged only on CUDA at paper sizes) and issue 14's loss speedup per Table-4 head."""
from __future__ import annotations

from iicrepro.bench.common import PAPER_PRESETS
from iicrepro.bench.loss_table4 import TABLE4_TARGET

MEM_LIMIT_BYTES = 16 * 2**30  # "within 16 GB of GPU memory" (issue 5), read as a 16 GiB card


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


def table4_targets(table4: dict, *, applicable: bool = True) -> list[dict]:
    """Issue 14's loss target per head: conv / fftmm and conv / auto >= 20, judged on any device at the
    Table-4 sizes (not applicable to reduced sizes)."""
    return [{"name": f"loss_k{r['k']}_{r['input_size']}_d{r['d']}_speedup",
             "what": f"conv / fftmm (auto: {r['auto_impl']}, {r['speedup']['auto']:.1f}x), forward + backward, "
                     f"K = {r['k']}, {r['input_size']} x {r['input_size']}, d = {r['d']}, batch {r['batch_size']}",
             "target": f">= {TABLE4_TARGET:g}", "measured": r["speedup"]["fftmm"],
             "status": ("pass" if r["meets_target"] else "fail") if applicable else "not applicable (reduced "
             "sizes)"} for r in table4["cases"]]
