"""`iicrepro bench --memory`: the memory one training step needs at a preset's own crop and batch on the CPU,
plain and with activation checkpointing (issue 15 d: can the paper scale train on this machine at all?).

The paper's batches (COCO-Stuff 120, Potsdam 75) at its crops (128, 200) hold every activation of Net10a for
both views until the backward pass. On the CPU the peak measure is the process's resident high-water mark
(VmHWM of /proc/self/status, which only ever rises; not getrusage's maxrss, which a child inherits from the
process that started it), so every case (preset, head, checkpointing, batch) runs in a fresh Python process:
one training step of head A or B (iicrepro.bench.step.bench_step, synthetic data of the preset's shape). The peak grows
linearly in the batch, so two small batches give the cost of one more pair and the extrapolation to the
preset's batch. The training images held in memory, the evaluation and the notebook's kernel come on top.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BATCHES = (4, 8)  # two small batches: the line through them extrapolates to the preset's batch


def machine_memory_mb() -> float:
    """Physical memory of this machine (MB)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def high_water_mb() -> float:
    """This process's resident high-water mark (MB): VmHWM of /proc/self/status (Linux), else getrusage's
    maxrss (which on Linux also counts the parent's memory at the fork that started this process)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def measure_case(*, preset: str, head: str, batch: int, checkpointing: bool, threads: int = 1) -> dict:
    """In this process: the high-water mark (MB) before and after one training step of `head` at the preset's
    crop."""
    import torch

    from iicrepro.bench.step import bench_step, build_model
    from iicrepro.config import make_config

    torch.set_num_threads(threads)
    device = torch.device("cpu")
    cfg = make_config(preset, channels_last=True, loss_impl="auto")
    _, model = build_model(cfg, device, checkpointing=checkpointing, compile_model=False)
    before = high_water_mb()
    step = bench_step(model, cfg, head=head, batch=batch, size=cfg.input_size, device=device, steps=1, warmup=0,
                      bf16=False, flops_per_image=1, epoch_pairs=None, peak_tflops=1.0)
    after = high_water_mb()
    return {"preset": preset, "head": head, "k": cfg.k_a if head == "A" else cfg.k_b, "batch": batch,
            "input_size": cfg.input_size, "half_side": cfg.half_side, "checkpointing": checkpointing,
            "threads": threads, "rss_before_mb": before, "rss_peak_mb": after, "step_ms": step["step_ms"]}


def run_case(**case) -> dict:
    """measure_case in a fresh interpreter (its own high-water mark); an error names the case."""
    proc = subprocess.run([sys.executable, "-m", "iicrepro.bench.memory", json.dumps(case)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench --memory: case {case} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def estimate(small: dict, large: dict, *, batch: int, available_mb: float) -> dict:
    """The line through two cases of different batch, evaluated at `batch`, against the machine's memory."""
    per_pair = (large["rss_peak_mb"] - small["rss_peak_mb"]) / (large["batch"] - small["batch"])
    peak = small["rss_peak_mb"] + per_pair * (batch - small["batch"])
    return {"preset": small["preset"], "head": small["head"], "k": small["k"],
            "checkpointing": small["checkpointing"], "batch": batch, "input_size": small["input_size"],
            "per_pair_mb": per_pair, "estimated_peak_mb": peak, "machine_memory_mb": available_mb,
            "fits": bool(peak < available_mb)}


def bench_memory(*, presets: list[str], heads=("A", "B"), batches=BATCHES, checkpointing=(False, True),
                 jobs: int = 1, runner=None, progress=print) -> dict:
    """Every (preset, checkpointing, head) at each of `batches`, and its estimate at the preset's batch.
    runner(**case) -> measured case (default run_case: a fresh process each); `jobs` cases at a time (each
    process has its own high-water mark, so running side by side does not mix their peaks). A case that fails
    (RuntimeError from the runner) is kept under "failed" with its error and its pair gets no estimate; the
    rest are still measured and written."""
    from iicrepro.config import make_config

    runner = runner or run_case
    if len(batches) != 2 or len(set(batches)) != 2:
        raise ValueError(f"--memory-batches: expected two different batch sizes, got {list(batches)}")
    if jobs < 1:
        raise ValueError(f"--memory-jobs: expected at least 1, got {jobs}")
    available = machine_memory_mb()
    groups = [(preset, ckpt, head) for preset in presets for ckpt in checkpointing for head in heads]
    wanted = [dict(preset=p, head=h, batch=b, checkpointing=c) for p, c, h in groups for b in sorted(batches)]

    def attempt(case: dict) -> dict:
        try:
            return runner(**case)
        except RuntimeError as error:  # e.g. its process killed for memory: the other cases are still measured
            progress(f"  {error}", flush=True)
            return {**case, "error": str(error)[-2000:]}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        measured = list(pool.map(attempt, wanted))
    estimates = []
    for index, (preset, ckpt, head) in enumerate(groups):
        target = make_config(preset).batch_size
        pair = measured[2 * index:2 * index + 2]
        if any("error" in case for case in pair):
            progress(f"  {preset} head {head} checkpointing {ckpt}: no estimate (a case failed)", flush=True)
            continue
        estimates.append(estimate(*pair, batch=target, available_mb=available))
        e = estimates[-1]
        progress(f"  {preset} head {head} checkpointing {ckpt}: {e['per_pair_mb']:.0f} MB per pair, "
                 f"~{e['estimated_peak_mb'] / 1024:.1f} GB at batch {target}", flush=True)
    return {"batches": sorted(batches), "jobs": jobs, "machine_memory_mb": available,
            "cases": [c for c in measured if "error" not in c], "failed": [c for c in measured if "error" in c],
            "estimates": estimates}


def memory_targets(table: dict) -> list[dict]:
    """Per preset and checkpointing: does the larger head's estimated step peak fit in this machine's memory?"""
    items = []
    for (preset, ckpt) in dict.fromkeys((e["preset"], e["checkpointing"]) for e in table["estimates"]):
        worst = max((e for e in table["estimates"] if (e["preset"], e["checkpointing"]) == (preset, ckpt)),
                    key=lambda e: e["estimated_peak_mb"])
        items.append({"name": f"memory_{preset}_{'checkpointed' if ckpt else 'plain'}",
                      "what": f"estimated peak of one training step, head {worst['head']}, batch {worst['batch']}, "
                              f"{worst['input_size']} x {worst['input_size']}, checkpointing {ckpt} (MB)",
                      "target": f"< {table['machine_memory_mb']:.0f} (this machine)",
                      "measured": round(worst["estimated_peak_mb"]), "status": "pass" if worst["fits"] else "fail"})
    return items


if __name__ == "__main__":  # one case, from run_case: JSON in argv[1], JSON on the last line of stdout
    print(json.dumps(measure_case(**json.loads(sys.argv[1]))))
