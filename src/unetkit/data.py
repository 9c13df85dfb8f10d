"""From files to tensors: mask conventions and intensity normalisation.

(Pairing, patch sampling and the Dataset grow here with the training issue.)
"""

from __future__ import annotations

import numpy as np

from .config import DataConfig
from .errors import UserError


def intensity_stats(image: np.ndarray, config: DataConfig, max_samples: int = 1_000_000) -> np.ndarray:
    """Per-channel (low, high) for "percentile" normalisation, shape (C, 2).

    Large images are subsampled on a regular grid, so huge images cost little.
    """
    channels = image.shape[0]
    step = max(1, int(np.sqrt(image[0].size / max_samples)))
    sample = np.asarray(image[:, ::step, ::step], dtype=np.float64).reshape(channels, -1)
    return np.percentile(sample, config.percentiles, axis=1).T


def normalize(image: np.ndarray, config: DataConfig, stats: np.ndarray | None = None) -> np.ndarray:
    """A `(C, H, W)` image as float32, normalised as the config says.

    "percentile": (x - p_low) / (p_high - p_low) per channel and image (pass
    `stats` from `intensity_stats` to reuse them across tiles of one image);
    "meanstd": (x - mean) / std per channel from the training set; "none": as is.
    """
    x = image.astype(np.float32, copy=True)
    if config.normalization == "percentile":
        stats = intensity_stats(image, config) if stats is None else stats
        low, high = stats[:, 0, None, None], stats[:, 1, None, None]
        x -= low.astype(np.float32)
        x /= np.maximum(high - low, 1e-6).astype(np.float32)
    elif config.normalization == "meanstd":
        if config.mean is None or config.std is None:
            raise ValueError("meanstd normalisation needs mean and std in the DataConfig")
        x -= np.asarray(config.mean, np.float32)[:, None, None]
        x /= np.maximum(np.asarray(config.std, np.float32), 1e-6)[:, None, None]
    return x


def mask_to_classes(raw: np.ndarray, config: DataConfig, path=None) -> np.ndarray:
    """Raw mask values -> class ids (int64), following DESIGN.md's mask conventions.

    - `foreground_value` set: that value is class 1, everything else class 0;
    - two values with two classes (0/255, 0/1, False/True): lower 0, higher 1;
    - otherwise values are class ids 0..n_classes-1.
    Pixels equal to `ignore_index` stay `ignore_index` throughout.
    """
    raw = np.asarray(raw)
    ignore = None if config.ignore_index is None else raw == config.ignore_index
    values = np.unique(raw if ignore is None else raw[~ignore])
    if config.foreground_value is not None:
        classes = (raw == config.foreground_value).astype(np.int64)
    elif config.n_classes == 2 and len(values) <= 2 and set(values.tolist()) <= {0, 255}:
        classes = (raw == 255).astype(np.int64)
    elif config.n_classes == 2 and len(values) == 2 and not set(values.tolist()) <= {0, 1}:
        classes = (raw == values.max()).astype(np.int64)
    else:
        bad = values[(values < 0) | (values >= config.n_classes)]
        if bad.size:
            shown = ", ".join(map(str, bad[:5].tolist())) + (" ..." if bad.size > 5 else "")
            raise UserError(
                f"mask values {shown} are not class ids 0..{config.n_classes - 1} "
                f"({len(values)} distinct values for {config.n_classes} classes)",
                path=path,
                fix="raise --classes, set --ignore-index, or relabel the mask",
            )
        classes = raw.astype(np.int64)
    if ignore is not None:
        classes[ignore] = config.ignore_index
    return classes
