"""Several processes (DDP, launched with torchrun): who we are, which part of a batch is ours, and the loss.

The IIC segmentation loss (Ji et al. 2019, eq. 5 / facts section 5) normalises each joint P_t over the
whole batch, so it is not a mean of per-sample terms: averaging per-process losses would change it.
Here every process computes its un-normalised joints (T, T, K, K) from its share of the batch, they are
summed over processes with a differentiable all-reduce, and only then normalised, so N processes compute
exactly the loss of one process holding the whole batch.

Gradients: the backward of the differentiable all-reduce (sum) sums the incoming gradients over
processes, so each process's local gradient is N times its share of the true gradient;
DistributedDataParallel then averages over the N processes, which gives exactly the single-process
gradient (tested in tests/test_distributed.py).

BatchNorm statistics stay per process (no SyncBatchNorm), as in the original, whose DataParallel replicas
each normalised their own chunk of the batch; DDP broadcasts rank 0's running statistics at each forward.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from iicrepro import loss as loss_module


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0  # global rank
    size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_world(device_type: str) -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), once per process.

    A group initialised by the caller (e.g. tests with init_method tcp://...) is used as it is.
    Backend: NCCL on CUDA, gloo on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def shard(tensor: torch.Tensor | None, world: World) -> torch.Tensor | None:
    """This process's contiguous share of a batch (first dimension); shares differ by at most one."""
    if tensor is None or not world.active:
        return tensor
    return torch.tensor_split(tensor, world.size, dim=0)[world.rank]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: forward all-reduces the tensor, backward the gradient.

    The same as torch.distributed.nn.functional.all_reduce (deprecated since torch 2.10 in favour of a
    private module), written out so that it behaves the same on every supported torch version.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def joint_all_reduce(joints: torch.Tensor, world: World) -> torch.Tensor:
    """Sum the un-normalised joints (T, T, K, K) over all processes, differentiably."""
    return _AllReduceSum.apply(joints) if world.active else joints


def seg_loss(p1: torch.Tensor, p2_back: torch.Tensor, mask: torch.Tensor | None, *, half_side: int,
             lam: float, impl: str, world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """IIC segmentation loss of the whole (all-process) batch; returns (loss, loss with lambda = 1).

    p1, p2_back: (B_local, K, H, W) probabilities; mask: (B_local, H, W) or None (all pixels count).
    One process: exactly ``loss.iic_seg_loss``. Several: the joints and the displacements that have
    mass anywhere are summed over processes before normalisation (same steps as ``iic_seg_loss``).
    """
    if not world.active:
        return loss_module.iic_seg_loss(p1, p2_back, mask, half_side=half_side, lam=lam, impl=impl)
    joints, pairs = local_joints(p1, p2_back, mask, half_side=half_side, impl=impl)
    joints = joint_all_reduce(joints, world)  # (T, T, K, K)
    valid = all_reduce_sum(pairs, world) > 0  # (T, T): a pair of masked-in pixels on some process
    with torch.autocast(device_type=p1.device.type, enabled=False):
        wide = torch.float32 if joints.device.type == "mps" else torch.float64
        loss, loss_no_lambda = loss_module._information_loss(joints.to(wide), valid.cpu(), lam)
    return loss.to(joints.dtype), loss_no_lambda.to(joints.dtype)


def local_joints(p1: torch.Tensor, p2_back: torch.Tensor, mask: torch.Tensor | None, *, half_side: int,
                 impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's un-normalised joints (T, T, K, K), T = 2d + 1, and (T, T) int64: 1 where it has
    a pair of masked-in pixels at that displacement.

    Uses loss.py's internals (the loss module exposes no public joint function yet).
    """
    p1, p2_back, mask, half_side = loss_module._check_inputs(p1, p2_back, mask, half_side)
    if impl == "auto":
        impl = loss_module.choose_impl(p1.device.type, p1.shape[1], half_side, *p1.shape[:1], *p1.shape[2:])
    with torch.autocast(device_type=p1.device.type, enabled=False):
        dtype = loss_module._compute_dtype(p1, p2_back)
        p1, p2_back = p1.to(dtype), p2_back.to(dtype)  # (B_local, K, H, W)
        if mask is not None:
            weight = mask.to(dtype).unsqueeze(1)  # (B_local, 1, H, W)
            p1, p2_back = p1 * weight, p2_back * weight
        joints = loss_module._JOINTS[impl](p1, p2_back, half_side)  # (T, T, K, K)
    pairs = loss_module._valid_displacements(mask, half_side).to(device=joints.device, dtype=torch.int64)
    return joints, pairs


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """In-place sum over processes of a non-differentiable tensor (counts, buffers); returns it."""
    if world.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process before evaluation."""
    if world.active:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
