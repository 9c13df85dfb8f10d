"""Training: options -> configs, setup, the loop, validation, stopping, checkpoints, distributed."""

from .api import train
from .options import Recipe, build_configs, read_recipe
from .planned import plan, write_plan

__all__ = ["train", "Recipe", "build_configs", "read_recipe", "plan", "write_plan"]
