"""A run folder for tests that need one without training: a model's config and its weights."""

from pathlib import Path

import torch

from unetkit.checkpoint import save_config, save_weights
from unetkit.config import DataConfig


def save_run(folder: Path, model: torch.nn.Module, data: DataConfig | None = None, **sections) -> Path:
    """`folder` as a finished run of `model`: its config (`data`: the defaults) and its weights as "last"."""
    save_config(folder, model.config, data or DataConfig(), **sections)
    save_weights(folder, model)
    return Path(folder)
