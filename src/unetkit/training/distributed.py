"""DistributedDataParallel plumbing for `torchrun --nproc_per_node=N -m unetkit train ...`.

The process group itself (`World`, `init`, `barrier`, `broadcast`, `all_sum`)
lives in `unetkit.world`, shared with sharded prediction; this module adds
what only training needs. Gloo on CPU, NCCL on GPU. Rank 0 alone writes
files; decisions that must agree (stop now? schedule progress?) are made on
rank 0 and broadcast.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..world import World, all_sum, barrier, broadcast, from_main, init, launched_by_torchrun, shutdown

__all__ = ["World", "all_sum", "barrier", "broadcast", "from_main", "init", "launched_by_torchrun", "shutdown", "wrap",
           "average_buffers"]


def wrap(model: torch.nn.Module, world: World, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """The model for training: DDP-wrapped (optionally with SyncBatchNorm) when distributed."""
    if not world.distributed:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


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
