"""unetkit: U-Net segmentation, faithful to Ronneberger et al. 2015, fast on a CPU."""

__version__ = "0.1.0"

from .checkpoint import load  # noqa: E402
from .config import AugmentConfig, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from .engine import train  # noqa: E402
from .errors import UserError  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .model import PRESETS, UNet, create_model, preset_config  # noqa: E402
from .predict import predict  # noqa: E402

__all__ = [
    "UNet",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "AugmentConfig",
    "train",
    "evaluate",
    "predict",
    "UserError",
    "PRESETS",
    "create_model",
    "preset_config",
    "load",
    "__version__",
]
