"""`iicrepro bench`: speed and memory of one training step, of the loss alone, and of evaluation.

The command line: arguments, their defaults (tiny or full), the three kinds of run (the default, --loss-table4,
--precision), and the JSON file each writes (schema: benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from iicrepro.bench.common import PAPER_PRESETS, SCHEMA_VERSION, environment, matmul_peak, write_json_atomic
from iicrepro.bench.loss_sweep import bench_loss, loss_repeats
from iicrepro.bench.loss_table4 import (CHOICE_DEFAULT, TABLE4_BATCH, TABLE4_CASES, bench_loss_table4,
                                        write_loss_choice)
from iicrepro.bench.precision import bench_precision, precision_choices, precision_targets
from iicrepro.bench.step import bench_preset, loss_share
from iicrepro.bench.verdicts import table4_targets, targets
from iicrepro.config import DATASETS, PRESETS

REFERENCE = {
    "source": "../shared/reference/iic-facts.md sections 5-6 (authors' logs, xu-ji/IIC b7602b7); issue 5",
    "hardware": "2-4 NVIDIA Tesla P40",
    "potsdam_single_head_epoch_min": [13, 23],  # Potsdam-3 ~13 min for 8,550 pairs (issue 5)
    "cocostuff3_single_head_epoch_min": 30,  # 36,660 pairs
    "head_a_k45_epoch_h": 5,  # COCO-15 head A, K = 45
    "eval_min": {"potsdam": 1, "cocostuff3": 6},
}


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
    kinds = p.add_mutually_exclusive_group()  # each writes its own kind of file: one per call
    kinds.add_argument("--loss-table4", action="store_true", help="only the loss at every Table-4 head: conv vs "
                       "fft vs fftmm vs auto, batch 16 (issue 14; --loss-batch/--loss-size do not apply); writes "
                       "<device>-loss-table4-<date>.json")
    p.add_argument("--conv-repeats", type=int, default=1, help="timed conv calls per Table-4 head (default 1)")
    p.add_argument("--write-loss-choice", nargs="?", const=str(CHOICE_DEFAULT), default=None, metavar="PATH",
                   help="with --loss-table4: write the measured fastest per head into the table `auto` reads "
                   "(default iicrepro/loss_choice.json)")
    p.add_argument("--mode", default="faithful", choices=("faithful", "clean"))
    p.add_argument("--loss-impl", default="auto", help="loss implementation inside the training step")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (CPU or CUDA)")
    kinds.add_argument("--precision", action="store_true", help="only one training step in float32 vs float32 + "
                       "channels_last vs bf16 + channels_last vs + torch.compile, at the CPU scale's and the presets' "
                       "crops (issue 14; --presets, --batch, --steps, --warmup apply); writes "
                       "<device>-precision-<date>.json")
    p.add_argument("--variants", default="all", help="with --precision: a comma-separated subset of "
                   "float32, float32+cl, bf16+cl, float32+cl+compile (default all)")
    p.add_argument("--crops", default="both", choices=("both", "cpu", "preset"), help="with --precision: the "
                   "CPU scale's crop, the preset's own, or both (default)")
    kinds.add_argument("--memory", action="store_true", help="only the peak memory of one training step at each "
                       "preset's own crop and batch on the CPU, plain and with activation checkpointing, extrapolated "
                       "from two small batches (issue 15 d; --presets applies); writes cpu-memory-<date>.json")
    p.add_argument("--memory-batches", default="4,8", help="with --memory: the two small batches measured")
    p.add_argument("--memory-jobs", type=int, default=1, help="with --memory: cases measured side by side (each "
                   "in its own process, one thread)")
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


def _header(args, device, *, reductions: list[str]) -> dict:
    """The fields every result file opens with: schema, environment, the arguments, reductions, reference."""
    return {"schema_version": SCHEMA_VERSION, "data": "synthetic", "env": environment(device),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "reductions": reductions, "reference": REFERENCE}


def _peaks(device, args) -> dict:
    """Matmul peak in float32, and in bfloat16 too on CUDA or with --bf16."""
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
    table4 = bench_loss_table4(device=device, batch=batch, repeats=loss_repeats(args),
                               conv_repeats=args.conv_repeats, agree_batch=min(2, batch), cases=cases,
                               choice=choice)
    result["loss_table4"] = table4
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    result["targets"] = {"note": "issue 14: conv / new >= 20 at every Table-4 head, same run, any device",
                         "items": table4_targets(table4, applicable=not result["reductions"])}
    if choice is not None and not result["reductions"]:
        write_loss_choice(choice, Path(args.write_loss_choice), source=f"iicrepro bench --loss-table4, revision "
                          f"{result['env']['git_revision']}, {result['env']['date']}")
        table4["choice_table"] = str(args.write_loss_choice)
    return result


def run_memory(args, names: list[str]) -> dict:
    """`--memory`: iicrepro.bench.memory over the presets named (default camvid3, dubai3), on the CPU."""
    # imported here, not at the top: `python -m iicrepro.bench.memory` (one case) must not find it imported
    from iicrepro.bench.memory import bench_memory, memory_targets

    try:
        batches = [int(b) for b in str(args.memory_batches).split(",")]
    except ValueError:
        raise ValueError(f"--memory-batches: expected two integers like 4,8, got {args.memory_batches!r}") from None
    presets = names if args.presets != "all" else ["camvid3", "dubai3"]
    cpu = torch.device("cpu")
    result = _header(args, cpu, reductions=[f"batches {batches} measured, the preset's batch extrapolated"])
    print(f"iicrepro bench --memory on {result['env']['device_name']} (cpu), revision "
          f"{result['env']['git_revision']}", flush=True)
    result["memory"] = bench_memory(presets=presets, batches=batches, jobs=args.memory_jobs)
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    result["targets"] = {"note": "issue 15 d: the paper scale on this machine's memory (the step alone; the "
                         "training images in memory and the evaluation come on top)",
                         "items": memory_targets(result["memory"])}
    return result


def measurement_kind(args) -> str:
    """What one call measures (the options are mutually exclusive): "memory", "precision", "loss-table4" or
    "step" (the default: step, loss and evaluation speed). Decides both what `run` does and the file name."""
    return ("memory" if args.memory else "precision" if args.precision else
            "loss-table4" if args.loss_table4 else "step")


def run(args) -> dict:
    """Every measurement of one `iicrepro bench` call; returns the JSON payload."""
    device, names = _resolve(args)
    kind = measurement_kind(args)
    if kind == "memory":
        return run_memory(args, names)
    if args.threads:  # 0: torch's default
        torch.set_num_threads(args.threads)
    if kind == "precision":
        return run_precision(args, device, names)
    if kind == "loss-table4":
        result = _header(args, device, reductions=[])
        print(f"iicrepro bench --loss-table4 on {result['env']['device_name']} ({device}), torch "
              f"{torch.__version__}, revision {result['env']['git_revision']}", flush=True)
        return run_loss_table4(args, device, result)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    result = _header(args, device, reductions=_reductions(args, device))
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
                                    repeats=loss_repeats(args))
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    applicable = device.type == "cuda" and not args.tiny and not args.batch and not args.size
    reason = "device is not CUDA" if device.type != "cuda" else "reduced sizes"
    result["targets"] = {"bf16": args.bf16, "note": "issue 5 judges the targets on one H100/H200 with bf16 "
                         "autocast", "items": targets(result, applicable=applicable, reason=reason)}
    return result


def run_precision(args, device, names: list[str]) -> dict:
    """`--precision`: iicrepro.bench.precision over the presets named (default camvid3, dubai3)."""
    presets = names if args.presets != "all" else ["camvid3", "dubai3"]
    result = _header(args, device, reductions=[f"batch {args.batch or 'by crop'}, head B only"])
    print(f"iicrepro bench --precision on {result['env']['device_name']} ({device}), revision "
          f"{result['env']['git_revision']}", flush=True)
    result["matmul_peak"] = _peaks(device, args)
    peak = result["matmul_peak"]["float32"]["tflops"]
    chosen = precision_choices(variants=args.variants, crops=args.crops)
    tiny = dict(crops_for=lambda preset: [(16, 2)], variants=("float32", "float32+cl", "bf16+cl"))
    result["precision"] = bench_precision(presets=presets, device=device, steps=args.steps, warmup=args.warmup,
                                          batch_for=lambda size: args.batch or (2 if size <= 100 else 1),
                                          peak_tflops=peak, **(tiny if args.tiny else chosen))
    result["env"]["load_average_1min_end"] = os.getloadavg()[0]
    result["targets"] = {"note": "issue 14: a training step >= 4x faster than float32 at 64 and 128, this machine",
                         "items": precision_targets(result["precision"])}
    return result


def _check_options(parser, args, argv) -> None:
    """Reject an option the chosen kind of measurement would silently ignore (parser.error: exit 2)."""
    given = {a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    ignored = {"--precision": {"--variants", "--crops"}, "--memory": {"--memory-batches", "--memory-jobs"}}
    for kind, options in ignored.items():
        if not getattr(args, kind.lstrip("-")) and given & options:
            parser.error(f"{', '.join(sorted(given & options))} only with {kind}")
    fixed = given & {"--tiny", "--heads", "--threads", "--checkpointing", "--batch", "--size"}
    if args.memory and fixed:
        parser.error(f"{', '.join(sorted(fixed))}: not with --memory, which measures each preset at its own crop "
                     f"and batch, both heads, with and without checkpointing, one thread")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `iicrepro bench`: run, print a summary, write the JSON file atomically."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_options(parser, args, argv)
    threads = torch.get_num_threads()
    try:
        result = run(args)
    finally:
        torch.set_num_threads(threads)  # --threads must not outlive the call (tests share the process)
    date = result["env"]["date"][:10]
    kind = measurement_kind(args)
    suffix = "" if kind == "step" else f"-{kind}"
    out = args.out or Path("benchmarks/results") / f"{result['env']['device']}{suffix}-{date}.json"
    write_json_atomic(Path(out), result)
    for item in result["targets"]["items"]:
        print(f"  target {item['name']} {item['target']}: measured {item['measured']}, {item['status']}")
    print(f"wrote {out}")
    return 0
