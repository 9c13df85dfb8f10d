"""Intensity normalisation: per-image percentiles, data-set mean and std, or none.

Prediction normalises exactly as training did (the run's DataConfig), with
per-image statistics computed once per image, never per tile.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig


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


def dataset_mean_std(images: list[np.ndarray]) -> dict:
    """Per-channel mean and std over all pixels of all images (float64 sums)."""
    total = sum(np.asarray(im, np.float64).sum(axis=(1, 2)) for im in images)
    squares = sum((np.asarray(im, np.float64) ** 2).sum(axis=(1, 2)) for im in images)
    count = sum(im[0].size for im in images)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    return {"mean": tuple(map(float, mean)), "std": tuple(map(float, std))}
