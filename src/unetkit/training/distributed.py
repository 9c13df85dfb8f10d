"""DistributedDataParallel plumbing for `torchrun --nproc_per_node=N -m unetkit train ...`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is
a no-op for one process. Gloo on CPU, NCCL on GPU. Rank 0 alone writes files;
decisions that must agree (stop now? schedule progress?) are made on rank 0
and broadcast.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> World:
    """Join the process group torchrun describes (if any); returns this process's place."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def wrap(model: torch.nn.Module, world: World, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """The model for training: DDP-wrapped (optionally with SyncBatchNorm) when distributed."""
    if not world.distributed:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast(values: list[float], world: World, device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sum over ranks (a copy; the input is untouched)."""
    if not world.distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_buffers(model: torch.nn.Module, world: World) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    DDP copies rank 0's buffers at each forward, so after the last step every
    rank holds its own; averaging before validation and saving makes all
    ranks evaluate, and end with, one identical model.
    """
    if not world.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= world.size
