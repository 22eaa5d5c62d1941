"""What every measurement of `iicrepro bench` shares: the environment record, the clock, memory, the matmul
peak, autocast, the median, the atomic JSON writer.

CUDA events time the GPU without synchronising inside a step; the CPU uses wall time. Peak memory is the
allocator's high-water mark on CUDA and the process's maxrss on the CPU.
"""
from __future__ import annotations

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

from iicrepro.revision import code_revision

SCHEMA_VERSION = 1  # of the JSON file (benchmarks/README.md)
PAPER_PRESETS = ("cocostuff3", "cocostuff15", "potsdam3", "potsdam6")  # the presets issue 5 judges


def allocator(maps: str | None = None) -> dict:
    """Which C allocator serves this process: jemalloc or tcmalloc when preloaded (`LD_PRELOAD`), else the C
    library's malloc; with `MALLOC_CONF` (jemalloc's options) when set.

    On a CPU it changes timings: glibc's malloc hands freed tensors above its mmap threshold (32 MiB at most)
    back to the kernel, and every page of the next one is faulted in again. `maps` is the text of
    /proc/self/maps (read when None; "" where there is none, as off Linux).
    """
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            maps = ""
    name = next((lib for lib in ("jemalloc", "tcmalloc") if f"lib{lib}" in maps), "libc malloc")
    return {"name": name, "malloc_conf": os.environ.get("MALLOC_CONF")}


def environment(device: torch.device) -> dict:
    """Device, versions, machine load, C allocator, git revision and date: the header of every result file."""
    cuda = device.type == "cuda"
    return {"device": device.type, "device_name": torch.cuda.get_device_name(device) if cuda else
            (platform.processor() or platform.machine()), "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],  # other work on the machine inflates CPU timings
            "allocator": allocator(),
            "git_revision": code_revision(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"), "cudnn_benchmark": bool(cuda and torch.backends.cudnn.benchmark)}


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing to wait for on the CPU)."""
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


def peak_memory(device: torch.device) -> dict:
    """Peak memory since the last reset_memory (CUDA), or of the whole process (CPU), in MiB."""
    if device.type == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20, "kind": "cuda_allocated"}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"peak_mem_mb": rss_mb, "kind": "process_maxrss (monotonic high-water mark of the whole run)"}


def reset_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window (the CPU's maxrss cannot be reset)."""
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
    sync(device)
    iters, start = 0, time.perf_counter()
    while iters < 3 or time.perf_counter() - start < seconds:
        for _ in range(5):
            a @ b
        iters += 5
        sync(device)
    elapsed = time.perf_counter() - start
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "iters": iters,
            "tflops": 2 * n**3 * iters / elapsed / 1e12}


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when `bf16`, else no change."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def median(values: list[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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
