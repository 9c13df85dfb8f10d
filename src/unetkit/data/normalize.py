"""Intensity normalisation: per-image percentiles, data-set mean and std, ImageNet's, or none.

Prediction normalises exactly as training did (the run's DataConfig), with
per-image statistics computed once per image, never per tile.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from ..io import ArraySource, strided_sample
from .windows import band_rows

PER_IMAGE = ("auto", "percentile", "percentile-joint", "imagenet")  # normalisations that scale each image by its own percentiles
# The statistics ImageNet encoders were trained with, for RGB in [0, 1] (torchvision's and the hub's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_mean_std(channels: int) -> dict:
    """ImageNet mean and std for `channels` inputs, matching how the first conv is adapted (model/encoders.py):
    one channel sees the RGB weights summed, so the grey value gets the mean of the three statistics; more
    than three channels repeat R, G, B cyclically."""
    if channels == 1:
        return {"mean": (sum(IMAGENET_MEAN) / 3,), "std": (sum(IMAGENET_STD) / 3,)}
    return {"mean": tuple(IMAGENET_MEAN[c % 3] for c in range(channels)), "std": tuple(IMAGENET_STD[c % 3] for c in range(channels))}


def intensity_stats(image: np.ndarray, config: DataConfig, max_samples: int = 1_000_000) -> np.ndarray:
    """Per-channel (low, high) for the per-image normalisations, shape (C, 2).

    "percentile-joint" gives every channel the same range, the percentiles of
    all channels together, so a colour keeps its hue. Large images are
    subsampled on a regular grid, so huge images cost little.
    """
    channels = image.shape[0]
    step = _sample_step(image.shape[1:], max_samples)
    sample = np.asarray(image[:, ::step, ::step], dtype=np.float64).reshape(channels, -1)
    if config.normalization == "percentile-joint":
        return np.tile(np.percentile(sample, config.percentiles), (channels, 1))
    return np.percentile(sample, config.percentiles, axis=1).T


def _sample_step(size: tuple[int, int], max_samples: int) -> int:
    return max(1, int(np.sqrt(size[0] * size[1] / max_samples)))


def source_intensity_stats(source, config: DataConfig, max_samples: int = 1_000_000) -> np.ndarray:
    """`intensity_stats` of a whole `io` source, read in bands (`windows.band_rows`): the same grid sample, so the same statistics.

    (`intensity_stats` of the sample itself keeps every pixel: a sample of
    N / step^2 < 2.25 x max_samples pixels gives a step of 1.)
    """
    step = _sample_step(source.shape[1:], max_samples)
    return intensity_stats(strided_sample(source, step, band_rows(source.shape[2])), config, max_samples)


def normalize(image: np.ndarray, config: DataConfig, stats: np.ndarray | None = None) -> np.ndarray:
    """A `(C, H, W)` image as float32, normalised as the config says.

    "percentile" (and "auto" before training resolves it): (x - p_low) / (p_high - p_low)
    per channel and image ("percentile-joint": per image, one range for all channels) (pass `stats` from `intensity_stats` to reuse them
    across tiles of one image); "meanstd": (x - mean) / std per channel from the
    training set; "imagenet": the percentile scaling to [0, 1] (any bit depth),
    then (x - mean) / std with ImageNet's statistics; "none": as is.
    """
    x = image.astype(np.float32, copy=True)
    if config.normalization in PER_IMAGE:
        stats = intensity_stats(image, config) if stats is None else stats
        low, high = stats[:, 0, None, None], stats[:, 1, None, None]
        x -= low.astype(np.float32)
        x /= np.maximum(high - low, 1e-6).astype(np.float32)
    if config.normalization in ("meanstd", "imagenet"):
        if config.mean is None or config.std is None:
            raise ValueError(f"{config.normalization} normalisation needs mean and std in the DataConfig")
        x -= np.asarray(config.mean, np.float32)[:, None, None]
        x /= np.maximum(np.asarray(config.std, np.float32), 1e-6)[:, None, None]
    return x


def dataset_mean_std(images: list) -> dict:
    """Per-channel mean and std over all pixels of all images, `(C, H, W)` arrays or `io` sources (float64 sums).

    Summed band by band (`windows.band_rows`), for arrays as for sources, so a
    data set gives the same statistics whether its images are held or streamed.
    """
    total = squares = 0
    count = 0
    for image in images:
        source = image if hasattr(image, "read") else ArraySource(np.asarray(image))
        _, height, width = source.shape
        rows = band_rows(width)
        for top in range(0, height, rows):
            band = np.asarray(source.read(top, min(top + rows, height), 0, width), np.float64)
            total = total + band.sum(axis=(1, 2))
            squares = squares + (band**2).sum(axis=(1, 2))
        count += height * width
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    return {"mean": tuple(map(float, mean)), "std": tuple(map(float, std))}
