"""Process-group handling for ``torchrun``: one code path for 1 and N processes.

Under ``torchrun --nproc_per_node N`` the environment carries RANK/WORLD_SIZE/LOCAL_RANK; the
group uses gloo on CPU and NCCL on CUDA. Only rank 0 logs and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lsdebm.runtime.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """The training device: :func:`lsdebm.runtime.device.resolve_device` with this process's local rank."""
    return resolve_device(choice, local_rank=local_rank)


def init_distributed(device_choice: str) -> DistContext:
    """Join the torchrun process group if the environment asks for one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, device)


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a tensor over ranks (identity for one process)."""
    if ctx.distributed:
        values = values.to(ctx.device, copy=True)  # NCCL reduces GPU tensors only
        dist.all_reduce(values)
        values = (values / ctx.world_size).cpu()
    return values


def all_reduce_sum_(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        on_device = values.to(ctx.device)
        dist.all_reduce(on_device)
        values.copy_(on_device.cpu())
    return values


def all_gather_ints(value: int, ctx: DistContext) -> list[int]:
    """Every rank's integer, in rank order (proves each rank took part)."""
    if not ctx.distributed:
        return [int(value)]
    out = [torch.zeros(1, dtype=torch.long, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(out, torch.tensor([int(value)], dtype=torch.long, device=ctx.device))
    return [int(t.item()) for t in out]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
