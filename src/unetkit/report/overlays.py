"""Pictures for people: an image with its classes tinted and outlined, and the map of a prediction's errors.

Both are drawn at most MAX_SIDE px on a side (larger images are subsampled).
Class colours stay the same for a class id in every image (skimage's
`label2rgb` would renumber the labels present in each image, so a class could
change colour between images); outlines come from `find_boundaries`.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from ..data.normalize import intensity_stats

MAX_SIDE = 2048
CLASS_COLOURS = "tab10"  # matplotlib colormap for classes 1, 2, ...
# Overlay colours (RGB).
COLOURS = {
    "interior": (205, 205, 205),
    "membrane": (70, 70, 70),
    "ignored": (150, 140, 120),
    "false_positive": (230, 40, 40),
    "false_negative": (40, 110, 235),
    "split": (255, 205, 0),
    "merge": (20, 220, 90),
}


def thumbnail_step(shape: tuple[int, ...]) -> int:
    """The subsampling step that brings the largest side of `shape` to at most MAX_SIDE."""
    return max(1, -(-max(shape) // MAX_SIDE))


def display_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for a person: the first three channels (or the one), stretched between percentiles 1 and 99.8."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    stats = intensity_stats(rgb, DataConfig(in_channels=3))
    low, high = stats[:, 0, None, None], stats[:, 1, None, None]
    scaled = (rgb.astype(np.float32) - low) / np.maximum(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def class_colours(n_classes: int) -> np.ndarray:
    """(max(K, 2), 3) RGB colours in 0..255; class 0 (background) is never drawn."""
    from matplotlib import colormaps

    cmap = colormaps[CLASS_COLOURS]
    return np.array([[0, 0, 0]] + [cmap(i % cmap.N)[:3] for i in range(max(n_classes, 2) - 1)], np.float32) * 255


def overlay(image: np.ndarray, labels: np.ndarray, n_classes: int, alpha: float = 0.35) -> np.ndarray:
    """(3, h, w) uint8: the image with each non-background class tinted and outlined in its colour (at most MAX_SIDE)."""
    from skimage.segmentation import find_boundaries

    step = thumbnail_step(labels.shape)
    image, labels = image[:, ::step, ::step], labels[::step, ::step]
    out = display_image(image).astype(np.float32)
    tint = class_colours(n_classes)[labels]
    objects = labels > 0
    out[objects] = (1 - alpha) * out[objects] + alpha * tint[objects]
    edges = find_boundaries(labels, mode="inner") & objects
    out[edges] = tint[edges]
    return out.round().astype(np.uint8).transpose(2, 0, 1)


def error_overlay(gt_fg: np.ndarray, pred_fg: np.ndarray, valid: np.ndarray | None = None,
                  splits: np.ndarray | None = None, merges: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: ground truth in greys, false positives red, false negatives blue, splits yellow, merges green.

    `splits` and `merges` (boolean maps, e.g. what the warping error leaves) are
    drawn 3 x 3 so that single pixels show. Subsampled to at most MAX_SIDE.
    """
    from scipy import ndimage

    gt_fg, pred_fg = np.asarray(gt_fg, bool), np.asarray(pred_fg, bool)
    valid = np.ones_like(gt_fg) if valid is None else np.asarray(valid, bool)
    image = np.empty(gt_fg.shape + (3,), np.uint8)
    layers = [
        ("membrane", ~gt_fg),
        ("interior", gt_fg),
        ("ignored", ~valid),
        ("false_positive", pred_fg & ~gt_fg & valid),
        ("false_negative", ~pred_fg & gt_fg & valid),
    ]
    for name, mask in (("split", splits), ("merge", merges)):
        if mask is not None:
            layers.append((name, ndimage.binary_dilation(mask, np.ones((3, 3), bool))))
    for name, mask in layers:
        image[mask] = COLOURS[name]
    step = thumbnail_step(gt_fg.shape)
    return image[::step, ::step]
