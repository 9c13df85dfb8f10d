"""unetkit: U-Net segmentation, faithful to Ronneberger et al. 2015, fast on a CPU."""

from .checkpoint import Run  # noqa: E402
from .checkpoint import load_run as load
from .config import AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from .errors import UserError  # noqa: E402
from .evaluation import evaluate, metrics  # noqa: E402
from .model import PRESETS, UNet, create_model, preset_config  # noqa: E402
from .prediction import PredictConfig, predict  # noqa: E402
from .training import Recipe, plan, train  # noqa: E402
from .version import __version__  # noqa: E402, F401

__all__ = [
    "UNet",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "AugmentConfig",
    "Recipe",
    "PredictConfig",
    "Run",
    "train",
    "plan",
    "evaluate",
    "predict",
    "metrics",
    "UserError",
    "PRESETS",
    "create_model",
    "preset_config",
    "load",
    "__version__",
]
