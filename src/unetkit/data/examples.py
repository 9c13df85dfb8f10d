"""Training and validation images: read, checked, normalised; in memory, or window by window (`data.lazy`) above a size."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from ..io import ArraySource, is_palette, label_dtype, read_image, read_mask
from .instance_maps import instance_objects
from .lazy import LazyExample, is_large, layout_warning, reads_lazily, survey_streamed
from .masks import Survey, classes_only_in, describe, mask_to_classes, resolve_masks
from .normalize import dataset_mean_std, imagenet_mean_std, normalize
from .pairing import Pair
from .weightmap import class_frequencies, weight_map
from .windows import crop_mirrored

# A mask larger than its image by at most this many pixels per side, and this share of the side, is cropped
# (top-left aligned, with a printed warning): the signature of an export that rounds its extent up (Amazon's
# 515 x 512 beside 512 x 512). More is a different raster, or a shifted one: refused.
SIZE_SLACK_PX = 8
SIZE_SLACK_SHARE = 0.02


@dataclasses.dataclass
class Example:
    """One image in memory: normalised (C, H, W) float32, class ids (H, W), optional weight map.

    `objects`: instance ids (H, W) of a training image with instance-map masks, as trained (touching
    borders taken out); the border weights are measured from them, then they are dropped.
    Patches, counts and validation ask through the methods, which `lazy.LazyExample` shares.
    """

    name: str
    image: np.ndarray
    classes: np.ndarray
    weight: np.ndarray | None = None
    objects: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape

    def crop(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, class ids, weight map or None) of a window, mirrored beyond the borders."""
        window = (top, left, height, width)
        weight = None if self.weight is None else crop_mirrored(self.weight, *window)
        return crop_mirrored(self.image, *window), crop_mirrored(self.classes, *window), weight

    def image_window(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        return crop_mirrored(self.image, top, left, height, width)

    def class_counts(self, n_classes: int, ignore_index: int | None) -> np.ndarray:
        return class_frequencies([self.classes], n_classes, ignore_index)

    def foreground(self, ignore_index: int | None, limit: int) -> np.ndarray:
        """Flat positions of the foreground pixels; past `limit` of them a regular subsample, so memory stays bounded."""
        foreground = self.classes > 0
        if ignore_index is not None:
            foreground &= self.classes != ignore_index
        flat = np.flatnonzero(foreground)
        return flat[:: -(-len(flat) // limit)] if len(flat) > limit else flat

    def attach_weights(self, class_weights, *, w0: float, sigma: float, ignore_index: int | None, cache=None) -> None:
        """The paper's weight map, computed once here and cropped with every patch; the objects are not needed after."""
        self.weight = weight_map(self.classes, class_weights, w0=w0, sigma=sigma, ignore_index=ignore_index, objects=self.objects)
        self.objects = None

    def pixels(self):
        """(source, normalised already, percentile statistics) for the predictor's bands."""
        return ArraySource(self.image), True, None

    def classes_rows(self, y0: int, y1: int) -> np.ndarray:
        return self.classes[y0:y1]


def read_pair(pair: Pair, config: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The raw image (C, H, W), its class ids (H, W) and, for instance maps, its objects (H, W), checked to match in size."""
    image = read_image(pair.image, pair.page)
    raw = read_mask(pair.mask, pair.page, palette_colours=config.mask_kind == "colours")
    raw = _fit_to(raw, image.shape[1:], pair)
    classes = mask_to_classes(raw, config, path=pair.mask)
    objects = instance_objects(raw, classes) if config.mask_kind == "instances" else None
    return image, _compact(classes), objects


def _fit_to(raw: np.ndarray, size: tuple[int, int], pair: Pair) -> np.ndarray:
    """The mask at its image's size: as it is, or cropped where it is a few pixels larger (see SIZE_SLACK_PX)."""
    return raw[: size[0], : size[1]] if _check_fit(raw.shape[:2], size, pair) else raw


def _check_fit(mask_size: tuple[int, int], size: tuple[int, int], pair: Pair) -> bool:
    """Whether a mask of `mask_size` is cropped to its image's `size` (warned); refused if it differs more."""
    if tuple(mask_size) == tuple(size):
        return False
    extra = [m - s for m, s in zip(mask_size, size)]
    if all(0 <= e <= min(SIZE_SLACK_PX, math.ceil(SIZE_SLACK_SHARE * s)) for e, s in zip(extra, size)):
        warn(f"{pair.mask}: mask is {mask_size[0]} x {mask_size[1]}, its image {size[0]} x {size[1]}: "
             f"cropped to the image (top-left aligned)")
        return True
    raise UserError(
        f"image is {size[0]} x {size[1]} but its mask {pair.mask.name} is {mask_size[0]} x {mask_size[1]}",
        path=pair.image,
        fix="give image and mask the same size (re-export the mask)",
    )


def warn(text: str) -> None:
    """One warning line on stderr (beside any progress bar), printed even when progress is off."""
    from tqdm import tqdm

    tqdm.write(f"warning: {text}", file=sys.stderr)


def _compact(classes: np.ndarray) -> np.ndarray:
    """Class ids in the smallest dtype that holds them (large masks stay small in memory)."""
    return classes.astype(label_dtype(int(classes.max())) if classes.min() >= 0 else np.int32)


def load_examples(
    train: list[Pair], val: list[Pair], config: DataConfig, *, progress: bool = True, lazy_above_mpix: float | None = None
) -> tuple[list, list, DataConfig]:
    """Read and normalise every pair; returns the config resolved from the data.

    The mask convention and class count come from the training masks (printed);
    `in_channels` from the images (all must agree); for "meanstd" the
    per-channel mean and std come from the training images only, for
    "imagenet" from ImageNet; "auto" left unresolved becomes "percentile".
    Pairs whose image has more than `lazy_above_mpix` megapixels (image and
    mask each a TIFF or a zarr store) are not read: they become `LazyExample`s,
    read window by window.
    """
    from tqdm import tqdm

    config = find_mask_convention(train, config, val, lazy_above_mpix)
    if progress:
        tqdm.write(describe(config))
    pairs = train + val
    loaded = [_load(p, config, lazy_above_mpix, progress) for p in tqdm(pairs, desc="reading", unit="image", disable=None if progress else True)]
    channels = [x.channels if isinstance(x, LazyExample) else x[0].shape[0] for x in loaded]
    for pair, count in zip(pairs, channels):
        if count != channels[0]:
            raise UserError(f"image has {count} channel(s) but {pairs[0].image.name} has {channels[0]}", path=pair.image,
                            fix="give all images the same channels")
    config = dataclasses.replace(config, in_channels=channels[0])
    if config.normalization == "auto":  # training resolves it first for pretrained weights; here it is the default
        config = dataclasses.replace(config, normalization="percentile")
    if config.normalization == "imagenet":
        config = dataclasses.replace(config, **imagenet_mean_std(channels[0]))
    if config.normalization == "meanstd":
        images = [x.image_source if isinstance(x, LazyExample) else x[0] for x in loaded[: len(train)]]
        config = dataclasses.replace(config, **dataset_mean_std(images))
    examples = [x.prepare(config) if isinstance(x, LazyExample) else
                Example(p.name, normalize(x[0], config), x[1], objects=x[2] if i < len(train) else None)
                for i, (p, x) in enumerate(zip(pairs, loaded))]
    return examples[: len(train)], examples[len(train) :], config


def _load(pair: Pair, config: DataConfig, lazy_above_mpix: float | None, progress: bool):
    """`read_pair`'s (image, classes, objects), or a LazyExample for a large TIFF or zarr pair (a TIFF's layout checked)."""
    from tqdm import tqdm

    if not reads_lazily(pair, lazy_above_mpix):
        if is_large(pair, lazy_above_mpix):
            warn(f"{pair.image.name} is larger than {lazy_above_mpix:g} megapixels but only TIFF and zarr images and masks are read "
                 "window by window: read whole (save image and mask as tiled TIFF or zarr to train on it lazily)")
        return read_pair(pair, config)
    example = LazyExample.open(pair, config)
    _check_fit(example.mask_source.shape[1:], example.shape, pair)
    for path in (pair.image, pair.mask):
        message = layout_warning(path, pair.page)
        if message:
            warn(message)
    if progress:
        tqdm.write(f"{pair.name}: {example.shape[0]} x {example.shape[1]} px, read window by window "
                   f"(larger than {lazy_above_mpix:g} megapixels)")
    return example


def find_mask_convention(train: list[Pair], config: DataConfig, val: list[Pair] = (), lazy_above_mpix: float | None = None) -> DataConfig:
    """The DataConfig with the convention of the training masks, surveyed together (see `masks.resolve_masks`).

    Validation masks (`val`) are checked against it: a value outside the class table is an error, a
    class of the table that no training mask holds a printed warning (the model cannot learn it).
    Masks of pairs read lazily (`lazy_above_mpix`) are surveyed band by band.
    """
    config, survey, _ = survey_masks(train, config, lazy_above_mpix=lazy_above_mpix)
    if val:
        held_out = Survey(count_labels=False)
        for pair in val:
            if reads_lazily(pair, lazy_above_mpix):
                survey_streamed(held_out, pair, config)
            else:
                held_out.add(read_mask(pair.mask, pair.page, palette_colours=config.mask_kind == "colours"), pair.mask)
        for k, path in sorted(classes_only_in(held_out, survey, config).items()):
            warn(f"class {k} is in the validation masks (e.g. {getattr(path, 'name', path)}) but in none of the training "
                 f"masks: the model cannot learn it, and its validation IoU stays 0")
    return config


def survey_masks(pairs: list[Pair], config: DataConfig, keep: bool = False,
                 lazy_above_mpix: float | None = None) -> tuple[DataConfig, Survey, list[np.ndarray | None]]:
    """(the convention of `pairs`' masks, the survey, their raw arrays in order if `keep`), each mask read once.

    Palette PNGs are surveyed last: in a set of colour-coded masks they are
    read as their colours (some tools save a few colour masks with a palette),
    elsewhere as their indices. Masks of pairs read lazily are surveyed band by
    band and never kept (None in their place).
    """
    survey, kept, palettes = Survey(), {}, []
    for index, pair in enumerate(pairs):
        if is_palette(pair.mask):
            palettes.append(index)
            continue
        if reads_lazily(pair, lazy_above_mpix):
            survey_streamed(survey, pair, config)
            kept[index] = None
            continue
        raw = read_mask(pair.mask, pair.page)
        survey.add(raw, pair.mask)
        kept[index] = raw if keep else None
    colours = config.mask_kind == "colours" or survey.kind == "colours"
    for index in palettes:
        raw = read_mask(pairs[index].mask, pairs[index].page, palette_colours=colours)
        survey.add(raw, pairs[index].mask)
        kept[index] = raw if keep else None
    return resolve_masks(survey, config), survey, [kept[i] for i in range(len(pairs))] if keep else []
