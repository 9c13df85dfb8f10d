"""A fingerprint of a training set, measured cheaply: the facts the plan's rules read.

Image sizes come from the headers of every file; pixels, masks and objects
from an even sample of at most SAMPLE pairs in name order (objects in each
mask's central CROP x CROP window), so a set of 700 images costs seconds.
Pairs that training reads window by window (`data.lazy`) are measured so too,
with the same results: pixels from the same grid, masks band by band.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from ..config import DataConfig
from ..data import LazyExample, Pair, band_rows, describe, mask_to_classes, name_groups, reads_lazily, survey_masks
from ..io import ArraySource, image_size, read_image, strided_sample

SAMPLE = 24  # pairs read whole
CROP = 1024  # px: objects are measured in this central window of a mask
PIXELS_PER_IMAGE = 20_000  # intensity statistics from this many pixels per image (a regular grid)
NEAR_PX = 5  # objects this close (px, either axis) nearly touch: the border weight's sigma
HASH_NAME = re.compile(r"^[0-9a-f-]{16,}$", re.IGNORECASE)  # ids like DSB's 64 hex digits: names without an order


@dataclasses.dataclass
class Fingerprint:
    """What the plan knows of a data set (JSON-ready; stored in the run)."""

    images: int  # image/mask pairs (stack pages count one each)
    sampled: int  # pairs read whole
    min_side: int  # px, over every image
    median_size: list[int]  # (height, width)
    max_size: list[int]
    channels: int
    dtype: str
    bits: int  # bits the sampled values need (12 for 12-bit data stored as uint16)
    grey_share: float  # share of the sampled images whose channels are equal (grey saved as RGB)
    mean: list[float]  # per channel, raw values
    std: list[float]
    p1: list[float]
    p99: list[float]
    masks: str  # the mask convention, as training prints it
    mask_kind: str
    instances: bool  # masks are instance label maps (0 = background, 1..N = objects)
    class_shares: list[float]  # share of the labelled pixels per class (instances: background, objects)
    objects_per_image: float  # median over the sampled masks
    object_area: float  # px: pixel-weighted median area of the objects (half the object pixels lie in larger ones)
    near_share: float  # share of the objects with another object within NEAR_PX
    top_bottom: float  # class layout difference between the top and bottom halves (total variation, 0..1)
    left_right: float  # the same between the left and right halves: the control
    names: str  # "groups" (see `groups`), "ids" (no order), "numbered" or "other"
    groups: dict[str, int] | None  # file-name groups and their sizes (e.g. the tiles of a scene)

    def describe(self) -> str:
        """A few lines for the console: the facts behind the choices."""
        shares = " / ".join(f"{s:.1%}" for s in self.class_shares)
        groups = f"; {len(self.groups)} name groups" if self.groups else ""
        h, w = self.median_size
        return (
            f"data: {self.images} pairs ({self.sampled} read); median {h} x {w} px, smallest side {self.min_side}; "
            f"{self.channels} channel(s) {self.dtype} ({self.bits} bit), {self.grey_share:.0%} grey\n"
            f"{self.masks}; class shares {shares}\n"
            f"objects: {self.objects_per_image:g} per image, pixel-weighted median {self.object_area:,.0f} px, "
            f"{self.near_share:.0%} within {NEAR_PX} px of another; class layout top/bottom {self.top_bottom:.2f}, "
            f"left/right {self.left_right:.2f}\nnames: {self.names}{groups}"
        )


def fingerprint(pairs: list[Pair], config: DataConfig, lazy_above_mpix: float | None = None) -> Fingerprint:
    """Measure `pairs` (all of them, in name order) with the mask options of `config`.

    Pairs training reads window by window (`lazy_above_mpix`) are read so here too.
    """
    sample = [pairs[i] for i in np.unique(np.linspace(0, len(pairs) - 1, min(SAMPLE, len(pairs))).round().astype(int))]
    sizes = np.array([image_size(p.image, p.page) for p in pairs])
    config, _, raws = survey_masks(sample, config, keep=True, lazy_above_mpix=lazy_above_mpix)
    instances = config.mask_kind == "instances"  # found by the survey, as training finds it
    names = [p.name for p in pairs]
    groups = name_groups(names) if _name_kind(names, None) != "ids" else None
    masks = [_mask_sample(raw, config, instances, p) if raw is not None else _lazy_mask_sample(p, config, instances)
             for raw, p in zip(raws, sample)]
    return Fingerprint(
        images=len(pairs), sampled=len(sample), min_side=int(sizes.min()),
        median_size=[int(v) for v in np.median(sizes, axis=0)], max_size=[int(v) for v in sizes.max(axis=0)],
        **_intensities([_pixel_grid(p, reads_lazily(p, lazy_above_mpix)) for p in sample]),
        masks=describe(config), mask_kind=config.mask_kind, instances=instances,
        **_mask_facts(masks, config, instances),
        names=_name_kind(names, groups), groups={k: len(v) for k, v in groups.items()} if groups else None,
    )  # fmt: skip


def _pixel_grid(pair: Pair, lazily: bool) -> np.ndarray:
    """The image's pixels on a regular grid of about PIXELS_PER_IMAGE, (C, n); read in bands for a lazy pair."""
    source = LazyExample.open(pair, DataConfig()).image_source if lazily else ArraySource(read_image(pair.image, pair.page))
    channels, height, width = source.shape
    step = max(1, int(np.sqrt(height * width / PIXELS_PER_IMAGE)))
    return strided_sample(source, step, band_rows(width)).reshape(channels, -1)


def _intensities(grids: list[np.ndarray]) -> dict:
    channels = grids[0].shape[0]
    grids = [g[:channels] for g in grids]
    pixels = np.concatenate([g for g in grids if g.shape[0] == channels], axis=1).astype(np.float64)
    dtype = grids[0].dtype
    bits = int(pixels.max()).bit_length() if dtype.kind in "iu" else 8 * dtype.itemsize
    grey = [g.shape[0] == 1 or all(np.array_equal(g[0], c) for c in g[1:3]) for g in grids]
    return dict(
        channels=channels, dtype=str(dtype), bits=max(1, bits), grey_share=float(np.mean(grey)),
        mean=pixels.mean(axis=1).round(3).tolist(), std=pixels.std(axis=1).round(3).tolist(),
        p1=np.percentile(pixels, 1, axis=1).round(3).tolist(), p99=np.percentile(pixels, 99, axis=1).round(3).tolist(),
    )  # fmt: skip


def _mask_sample(raw: np.ndarray, config: DataConfig, instances: bool, pair: Pair) -> tuple:
    """(class counts, those of the top, bottom, left and right halves, the objects of the central crop) of a mask."""
    classes = _classes(raw, config, instances, pair)
    top, left = _crop_corner(raw.shape[:2])
    crop = raw[top : top + CROP, left : left + CROP]
    return (*_layout([classes], raw.shape[:2], config, instances), _objects(crop, config, instances, pair))


def _lazy_mask_sample(pair: Pair, config: DataConfig, instances: bool) -> tuple:
    """`_mask_sample` of a mask read band by band: the same counts and objects."""
    mask = LazyExample.open(pair, config)
    _, height, width = mask.mask_source.shape
    rows = band_rows(width)
    bands = (_classes(mask.raw_mask(y, min(y + rows, height), 0, width), config, instances, pair) for y in range(0, height, rows))
    top, left = _crop_corner((height, width))
    crop = mask.raw_mask(top, min(top + CROP, height), left, min(left + CROP, width))
    return (*_layout(bands, (height, width), config, instances), _objects(crop, config, instances, pair))


def _classes(raw: np.ndarray, config: DataConfig, instances: bool, pair: Pair) -> np.ndarray:
    """Class ids; instances: 0 background, 1 object."""
    return (raw > 0).astype(np.int64) if instances else mask_to_classes(raw, config, path=pair.mask)


def _crop_corner(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(max(0, (s - CROP) // 2) for s in size)


def _objects(crop: np.ndarray, config: DataConfig, instances: bool, pair: Pair) -> np.ndarray:
    """The objects of a mask's central crop, labelled apart (int32, 0 = none)."""
    from scipy import ndimage

    if instances:
        return crop.astype(np.int32)
    classes = mask_to_classes(crop, config, path=pair.mask)
    objects = np.zeros(classes.shape, np.int32)
    for value in range(1, config.n_classes):  # the 4-connected components of each class but the first
        labels, count = ndimage.label(classes == value)
        objects[labels > 0] = labels[labels > 0] + objects.max()
    return objects


def _layout(bands, size: tuple[int, int], config: DataConfig, instances: bool) -> tuple[np.ndarray, np.ndarray]:
    """(class counts, those of the top, bottom, left and right halves) of a mask given as class-id bands from the top."""
    n_classes = 2 if instances else config.n_classes
    (h, w), top = size, 0
    counts, halves = np.zeros(n_classes), np.zeros((4, n_classes))
    for classes in bands:
        counts += _class_counts(classes, n_classes, config.ignore_index)
        parts = (classes[: max(0, h // 2 - top)], classes[max(0, h - h // 2 - top) :], classes[:, : w // 2], classes[:, w - w // 2 :])
        for k, part in enumerate(parts):
            halves[k] += _class_counts(part, n_classes, config.ignore_index)
        top += len(classes)
    return counts, halves


def _mask_facts(masks: list[tuple], config: DataConfig, instances: bool) -> dict:
    n_classes = 2 if instances else config.n_classes
    counts, halves, areas, near, per_image = np.zeros(n_classes), np.zeros((4, n_classes)), [], 0, []
    for mask_counts, mask_halves, objects in masks:
        counts += mask_counts
        halves += mask_halves
        area = np.bincount(objects.ravel())[1:]
        areas.append(area[area > 0])
        per_image.append(len(areas[-1]))
        near += _near_objects(objects)
    areas = np.sort(np.concatenate(areas)) if areas else np.zeros(0)
    median_area = float(areas[np.searchsorted(np.cumsum(areas), areas.sum() / 2)]) if areas.size else 0.0
    return dict(
        class_shares=(counts / max(counts.sum(), 1)).round(4).tolist(), objects_per_image=float(np.median(per_image)),
        object_area=median_area, near_share=round(near / max(areas.size, 1), 4),
        top_bottom=round(_variation(halves[0], halves[1]), 4), left_right=round(_variation(halves[2], halves[3]), 4),
    )  # fmt: skip


def _class_counts(classes: np.ndarray, n_classes: int, ignore_index: int | None) -> np.ndarray:
    values = classes[classes != ignore_index] if ignore_index is not None else classes
    return np.bincount(values.ravel(), minlength=n_classes)[:n_classes].astype(np.float64)


def _variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two class histograms: 0 alike, 1 no class in common."""
    return 0.5 * float(np.abs(a / max(a.sum(), 1) - b / max(b.sum(), 1)).sum())


def _near_objects(objects: np.ndarray) -> int:
    """How many objects have a pixel of another object within NEAR_PX (in a square window)."""
    from scipy import ndimage

    if not objects.any():
        return 0
    size = 2 * NEAR_PX + 1
    highest = ndimage.maximum_filter(objects, size)
    lowest = ndimage.minimum_filter(np.where(objects > 0, objects, np.iinfo(np.int32).max), size)
    near = (objects > 0) & (highest != lowest)
    return len(np.unique(objects[near]))


def _name_kind(names: list[str], groups) -> str:
    if sum(bool(HASH_NAME.match(n)) for n in names) >= 0.9 * len(names):
        return "ids"  # (hashes sharing a prefix may look like groups: they are not)
    if groups:
        return "groups"
    return "numbered" if all(re.search(r"\d", n) for n in names) else "other"
