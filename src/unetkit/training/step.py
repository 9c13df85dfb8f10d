"""One optimiser step, the learning rate, the optimiser, and the stream of augmented batches."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..data import augment_batch
from ..devices import training_memory_format
from . import distributed
from .context import Context
from .transfer import param_groups


def autocast(ctx: Context):
    """Mixed precision where the run has it (CUDA, or `cpu_bf16`), else a no-op context."""
    return torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None)


def train_step(ctx: Context, batch: dict) -> float:
    """One optimiser step on one batch; returns the loss."""
    image, mask, weight = batch["image"], batch["mask"], batch.get("weight")
    # 1. Forward under autocast (if on): convs and matmuls in bf16/fp16, the loss in fp32.
    with autocast(ctx):
        logits = ctx.model(image)
    loss = ctx.loss_fn(logits.float(), mask, weight)
    # 2. Backward; the scaler multiplies the loss so fp16 gradients do not underflow (a no-op otherwise).
    ctx.scaler.scale(loss).backward()
    # 3. Unscale before clipping, so the threshold applies to the true gradient norm.
    if ctx.config.grad_clip:
        ctx.scaler.unscale_(ctx.optimizer)
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.config.grad_clip)
    # 4. Step (skipped by the scaler if fp16 gradients overflowed), then adapt the scale.
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    # 5. Drop the gradients instead of zero-filling them: less memory traffic.
    ctx.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then the schedule over `progress` in [0, 1]."""
    warm = min(1.0, (step + 1) / (config.warmup_steps + 1)) if config.warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    decay = {
        "cosine": 0.5 * (1 + math.cos(math.pi * progress)),
        "poly": (1 - progress) ** 0.9,
        "constant": 1.0,
    }[config.schedule]
    return config.lr * warm * decay


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over `transfer.param_groups`: each group's lr is `lr_scale` x the schedule's (see `set_learning_rate`)."""
    groups = param_groups(model, config)
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # runs saved before the groups had no scale


class StepBatches(torch.utils.data.Sampler):
    """Sample indices of this rank's share of each step's global batch, from `start` on, forever.

    Step `s` uses samples s*B .. s*B+B-1 whatever the number of processes, so a
    run may resume on a different number of them and still see the same data.
    """

    def __init__(self, start: int, batch_size: int, world: distributed.World):
        self.start, self.per_rank, self.world = start, batch_size // world.size, world

    def __iter__(self):
        step = self.start
        while True:
            first = step * self.per_rank * self.world.size + self.world.rank * self.per_rank
            yield list(range(first, first + self.per_rank))
            step += 1


def batch_stream(ctx: Context, start: int):
    """Batches from step `start` on, augmented and on the device: what the step trains on.

    On a CPU the batch is augmented where it is collated, so with `workers` > 0
    the crop and the augmentation of the next batches overlap the step (a
    worker runs torch on one thread); on a GPU it is augmented there. Either
    way a patch is a function of its sample index only.
    """
    augmenter, on_cpu = AugmentingCollate(ctx), ctx.device.type == "cpu"
    loader = torch.utils.data.DataLoader(
        ctx.dataset,
        batch_sampler=StepBatches(start, ctx.config.batch_size, ctx.world),
        num_workers=ctx.run.workers,
        collate_fn=augmenter if on_cpu else None,
        pin_memory=not on_cpu,
        # Its own generator: drawing worker seeds from the global one would shift dropout after a resume.
        generator=torch.Generator().manual_seed(ctx.config.seed),
    )
    for batch in loader:
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        yield batch if on_cpu else augmenter.augment(batch)


class AugmentingCollate:
    """A DataLoader's collate_fn that also augments (`augment`): the batch leaves the loader ready for the step."""

    def __init__(self, ctx: Context):
        self.config = ctx.config.augment
        self.memory_format = training_memory_format(ctx.run, ctx.model_config.norm, ctx.device)
        self.input_size, self.target_size = ctx.dataset.target + 2 * ctx.dataset.margin, ctx.dataset.target

    def __call__(self, items: list[dict]) -> dict:
        return self.augment(torch.utils.data.default_collate(items))

    def augment(self, batch: dict) -> dict:
        """The batch the step trains on: augmented, the target cropped to the model's output (valid padding)."""
        image, mask, weight = augment_batch(batch, self.config, input_size=self.input_size, target_size=self.target_size)
        image = image.contiguous(memory_format=self.memory_format)
        return {"image": image, "mask": mask, **({"weight": weight} if weight is not None else {})}
