"""torch.distributed set-up for `torchrun` (NCCL on GPU, gloo on CPU) and gradient averaging.

Gradients are averaged by hand after each backward (as stylegan2-ada does) rather than with
DDP wrappers: the loop runs G and D forwards in several phases, which DDP's single-forward
assumption handles badly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node (picks the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda when available, else cpu; a bare 'cuda' becomes this process's local GPU."""
    from kdgan.errors import KdganError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise KdganError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KdganError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown_distributed(wait_for_all: bool = False) -> None:
    """Leave the process group; with wait_for_all (a run that ended normally), first wait for every rank.

    Without the wait, a rank that leaves while rank 0 still exports its run aborted now and then in
    gloo's C++ teardown ("terminate called without an active exception", exit -6: 6 of 45
    2-process CPU runs; 0 of 40 with the wait). After an error no wait: the other ranks may never
    reach it.
    """
    if dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if info.world_size > 1:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average .grad over ranks in one flat all-reduce."""
    if info.world_size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def params_checksum(module: nn.Module) -> float:
    """A float64 fingerprint of the parameters, to check ranks stayed in sync."""
    return float(sum(p.detach().double().sum() for p in module.parameters()))
