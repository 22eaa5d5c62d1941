"""Numerical precision of the network: bf16 autocast where the hardware multiplies bf16 natively.

Not in the paper (the original trains in float32 on Tesla P40s). bf16 autocast runs the convolutions in
bfloat16 and keeps the loss in float32 (iicrepro.loss computes with autocast off). It pays only where the
matrix units take bf16: CUDA GPUs with bf16 support, and CPUs with AVX512-BF16 or AMX-BF16. On a CPU
without them (e.g. AVX2 only) oneDNN emulates bf16 and a Net10a step is far *slower* than float32
(`iicrepro bench --precision`, benchmarks/results/cpu-precision-*.json), so "auto" keeps float32 there.
"""
from __future__ import annotations

import torch

from iicrepro.config import BF16_SETTINGS
CPU_BF16_UNITS = ("amx_bf16", "avx512_bf16")  # what torch.cpu.get_capabilities() reports


def cpu_bf16_units() -> list[str]:
    """The bf16 matrix instructions this CPU has, as torch itself reports them (may be empty)."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return [name for name in CPU_BF16_UNITS if capabilities.get(name)]


def bf16_native(device: torch.device) -> bool:
    """True when `device` multiplies bf16 in hardware (CUDA with bf16 support; CPU with AMX/AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_units())
    return False


def resolve_bf16(setting, device: torch.device) -> bool:
    """Whether bf16 autocast is on: True/False as asked (honoured on CPU and CUDA), "auto" by hardware."""
    if setting not in BF16_SETTINGS:
        raise ValueError(f"bf16={setting!r}: expected one of {BF16_SETTINGS}")
    if setting == "auto":
        return bf16_native(device)
    return bool(setting) and device.type in ("cpu", "cuda")


def describe(device: torch.device) -> dict:
    """What a run file records about the precision choice on `device`."""
    return {"bf16_native": bf16_native(device),
            "cpu_bf16_units": cpu_bf16_units() if device.type == "cpu" else None}
