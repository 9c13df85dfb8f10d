"""The processes torchrun starts: where this one stands among them, and what they agree on.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is
a no-op for one process. Training (`training.distributed`, DDP on top of
this) and sharded prediction (`prediction.sharding`) share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from .errors import UserError


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


def env_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun); readable before and after the group."""
    return int(os.environ.get("RANK", "0"))


def init(device: torch.device, backend: str | None = None, timeout: datetime.timedelta | None = None) -> World:
    """Join the process group torchrun describes (if any); returns this process's place.

    `backend`: default gloo on CPU, NCCL on GPU. `timeout`: how long a collective
    (a barrier) waits for the slowest rank (torch's default: 30 minutes).
    """
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, **({"timeout": timeout} if timeout else {}))
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def joined(device: torch.device, backend: str | None = None, timeout: datetime.timedelta | None = None):
    """`init` for a block; the group is left at its end if this block joined it (a caller's group is left alone)."""
    joined_here = not dist.is_initialized()
    world = init(device, backend, timeout)
    try:
        yield world
    finally:
        if joined_here:
            shutdown()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast(values: list[float], world: World, device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def broadcast_object(value, world: World):
    """Rank 0's `value` (any picklable object) on every rank; needs a gloo group (or NCCL with a set device)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(compute, world: World):
    """`compute()` run on rank 0 alone; its result on every rank, or its UserError raised on every rank."""
    result, error = None, None
    if world.main:
        try:
            result = compute()
        except UserError as exc:
            if not world.distributed:
                raise
            error = exc
    result, problem = broadcast_object((result, None if error is None else (error.problem, error.path, error.fix)), world)
    if error is not None:
        raise error
    if problem is not None:
        raise UserError(problem[0], path=problem[1], fix=problem[2])
    return result


def all_gather_objects(value, world: World) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sum over ranks (a copy; the input is untouched)."""
    if not world.distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
