"""From probabilities to objects: foreground, small-object removal, hole filling, instances.

Touching objects merge in a plain connected-component labelling. They are
separated by a seeded watershed: seeds are the maxima of the distance
transform of the foreground that rise at least `h` pixels above their
surroundings (h-maxima, robust to the plateaus a disk's distance map has),
or the cores where the model is very sure (`seeds="probability"`, for models
trained with the paper's border weights, whose interiors peak at object
centres). Every object gets at least one seed, so none is lost.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

SEEDS = ("distance", "probability")


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """How a probability map becomes an instance label image."""

    foreground_class: int = 1  # the class whose objects are separated
    threshold: float = 0.5  # foreground = probability of that class > threshold
    min_size: int = 16  # objects smaller than this many pixels are removed (0: keep all)
    max_hole: int | None = None  # holes up to this many pixels are filled (None: all, 0: none)
    seeds: str = "distance"
    h: float = 2.0  # distance seeds: a maximum must rise this many pixels above its saddle
    seed_threshold: float = 0.9  # probability seeds: cores where p > seed_threshold

    def __post_init__(self):
        if self.seeds not in SEEDS:
            raise ValueError(f"seeds={self.seeds!r} is not one of {', '.join(SEEDS)}")
        if not 0 <= self.threshold < 1 or not 0 <= self.seed_threshold < 1:
            raise ValueError("thresholds must be in [0, 1)")
        if self.min_size < 0 or self.h <= 0 or (self.max_hole is not None and self.max_hole < 0):
            raise ValueError("min_size and max_hole must be >= 0 and h > 0")


def foreground(probs: np.ndarray, class_index: int = 1, threshold: float = 0.5) -> np.ndarray:
    """Boolean (H, W) mask of one class from (K, H, W) probabilities (K = 1: the sigmoid output)."""
    if probs.shape[0] == 1:
        class_index = 0
    if not 0 <= class_index < probs.shape[0]:
        raise ValueError(f"class {class_index} not in 0..{probs.shape[0] - 1}")
    return probs[class_index] > threshold


def remove_small_objects(mask: np.ndarray, min_size: int) -> np.ndarray:
    """The mask without 4-connected objects of fewer than `min_size` pixels."""
    if min_size <= 1:
        return mask.copy()
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """The mask with enclosed background regions filled: all of them, or those of at most `max_size` pixels."""
    if max_size == 0:
        return mask.copy()
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if max_size is not None:
        labels, _ = ndimage.label(holes)
        holes &= (np.bincount(labels.ravel()) <= max_size)[labels]
    return mask | holes


def distance_seeds(mask: np.ndarray, h: float = 2.0) -> np.ndarray:
    """Labelled seeds: h-maxima of the Euclidean distance to the background."""
    from skimage.morphology import h_maxima

    distance = ndimage.distance_transform_edt(mask)
    peaks = h_maxima(distance, h).astype(bool) & mask
    return ndimage.label(peaks, structure=np.ones((3, 3)))[0]


def probability_seeds(probability: np.ndarray, mask: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Labelled seeds: the 4-connected cores where the model's probability exceeds `threshold`."""
    return ndimage.label((probability > threshold) & mask)[0]


def separate_instances(mask: np.ndarray, seeds: np.ndarray, landscape: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (uint32, 0 = background): a watershed of the mask from the seeds.

    `landscape` is flooded from the seeds (default: the negative distance
    transform, so objects split at their narrowest necks). An object with no
    seed becomes one instance of its own.
    """
    from skimage.segmentation import watershed

    if landscape is None:
        landscape = -ndimage.distance_transform_edt(mask)
    seeds = seeds.astype(np.int64) * mask
    components, count = ndimage.label(mask)
    seeded = np.zeros(count + 1, bool)
    seeded[components[seeds > 0]] = True
    orphans = ~seeded[components] & mask  # components no seed falls in
    seeds = np.where(orphans, components + seeds.max(), seeds)
    labels = watershed(landscape, seeds, mask=mask)
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n (0 stays background), uint32."""
    values, inverse = np.unique(labels, return_inverse=True)
    if values[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.uint32)


def instances(probs: np.ndarray, config: InstanceConfig = InstanceConfig()) -> np.ndarray:
    """Instance labels (H, W) uint32 from (K, H, W) probabilities: threshold, clean, split touching objects."""
    probability = probs[0 if probs.shape[0] == 1 else config.foreground_class]
    mask = foreground(probs, config.foreground_class, config.threshold)
    mask = remove_small_objects(fill_holes(mask, config.max_hole), config.min_size)
    if config.seeds == "probability":
        seeds, landscape = probability_seeds(probability, mask, config.seed_threshold), -probability
    else:
        seeds, landscape = distance_seeds(mask, config.h), None
    return separate_instances(mask, seeds, landscape)
