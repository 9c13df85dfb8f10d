"""Checkpoints: the weights and the whole training state, saved and restored exactly."""

from __future__ import annotations

import dataclasses

import torch

from ..checkpoint import save_train_state, save_weights
from .context import Context, Loop


def save_checkpoint(ctx: Context, loop: Loop) -> None:
    """Weights (safetensors) and the whole training state, rank 0 only, each file atomic.

    The state file repeats the weights, so a kill between the two writes can
    never pair new weights with an old optimiser.
    """
    if not ctx.world.main:
        return
    save_weights(ctx.run_dir, ctx.net, "last")
    state = {
        "loop": dataclasses.asdict(loop),
        "model": {k: v.detach().cpu() for k, v in ctx.net.state_dict().items()},
        "optimizer": ctx.optimizer.state_dict(),
        "scaler": ctx.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if ctx.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(ctx.device)
    save_train_state(ctx.run_dir, state)


def restore_checkpoint(ctx: Context, state: dict) -> Loop:
    """Put model, optimiser, scaler and RNG back where `save_checkpoint` left them."""
    ctx.net.load_state_dict(state["model"])
    ctx.optimizer.load_state_dict(state["optimizer"])
    ctx.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], ctx.device)
    return Loop(**state["loop"])
