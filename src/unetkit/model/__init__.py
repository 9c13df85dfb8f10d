"""The network: layers and their factories, the U-Net, presets, size and memory arithmetic, losses."""

from .encoder_unet import EncoderUNet
from .encoders import ENCODERS
from .losses import make_loss, soft_dice_loss, weighted_cross_entropy
from .memory import activation_bytes_per_pixel, choose_tile, training_megabytes
from .presets import PRESETS, build_model, create_model, preset_config
from .summary import count_parameters, summarize
from .unet import UNet, UNetBase

__all__ = [
    "make_loss", "soft_dice_loss", "weighted_cross_entropy", "activation_bytes_per_pixel", "choose_tile", "training_megabytes", "PRESETS",
    "create_model", "preset_config", "count_parameters", "summarize", "UNet",
    "UNetBase", "ENCODERS", "EncoderUNet", "build_model",
]
