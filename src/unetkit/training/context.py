"""What the training functions share: the run's fixed Context and its Loop progress."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..data import Example, PatchDataset
from . import distributed

HOOKS = ("on_step_end", "on_epoch_end", "on_train_end")
Hooks = dict[str, Callable]


@dataclasses.dataclass
class Loop:
    """Training progress; everything here goes into `train_state.pt`."""

    step: int = 0
    total_steps: int | None = None  # None: a time-budget-only run (the schedule follows the clock)
    elapsed: float = 0.0  # training seconds over all invocations
    best: float = -math.inf  # best validation mean IoU
    history: list = dataclasses.field(default_factory=list)  # one dict per validation (metrics.csv)

    @property
    def validation_seconds(self) -> list[float]:
        """What each validation so far took (rows of epochs that did not validate have none)."""
        return [row["val_s"] for row in self.history if "val_s" in row]


@dataclasses.dataclass
class Context:
    """What `fit` works with, fixed for the run."""

    model: torch.nn.Module  # DDP-wrapped when distributed
    net: torch.nn.Module  # the bare model
    model_config: ModelConfig
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable
    config: TrainConfig
    run: RunConfig
    data_config: DataConfig
    dataset: PatchDataset
    val: list[Example]
    run_dir: Path
    device: torch.device
    world: distributed.World
    amp_dtype: torch.dtype | None
    hooks: Hooks
    progress: bool = True
    plotted_at: float = -math.inf  # curves.png is redrawn at most every PLOT_EVERY_S, and at the end ...
    plotted_rows: int = 0  # ... unless it already shows every row
    interrupted: bool = False  # fit stopped on SIGINT: `train` raises KeyboardInterrupt after saving (CLI exit 130)
    signalled: bool = False  # fit stopped on SIGINT or SIGTERM, not by its steps or budget: no final model follows

    @property
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.config.batch_size


def call_hook(hooks: Hooks, name: str, *args) -> None:
    if name in hooks:
        hooks[name](*args)
