"""Training and validation images in memory: read, checked, normalised."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from ..io import is_palette, label_dtype, read_image, read_mask
from .instance_maps import instance_objects
from .masks import Survey, classes_only_in, describe, mask_to_classes, resolve_masks
from .normalize import dataset_mean_std, imagenet_mean_std, normalize
from .pairing import Pair

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
    """

    name: str
    image: np.ndarray
    classes: np.ndarray
    weight: np.ndarray | None = None
    objects: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape


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
    if raw.shape[:2] == size:
        return raw
    extra = [m - s for m, s in zip(raw.shape[:2], size)]
    if all(0 <= e <= min(SIZE_SLACK_PX, math.ceil(SIZE_SLACK_SHARE * s)) for e, s in zip(extra, size)):
        warn(f"{pair.mask}: mask is {raw.shape[0]} x {raw.shape[1]}, its image {size[0]} x {size[1]}: "
             f"cropped to the image (top-left aligned)")
        return raw[: size[0], : size[1]]
    raise UserError(
        f"image is {size[0]} x {size[1]} but its mask {pair.mask.name} is {raw.shape[0]} x {raw.shape[1]}",
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
    train: list[Pair], val: list[Pair], config: DataConfig, *, progress: bool = True
) -> tuple[list[Example], list[Example], DataConfig]:
    """Read and normalise every pair; returns the config resolved from the data.

    The mask convention and class count come from the training masks (printed);
    `in_channels` from the images (all must agree); for "meanstd" the
    per-channel mean and std come from the training images only, for
    "imagenet" from ImageNet; "auto" left unresolved becomes "percentile".
    """
    from tqdm import tqdm

    config = find_mask_convention(train, config, val)
    if progress:
        tqdm.write(describe(config))
    raw = [read_pair(p, config) for p in tqdm(train + val, desc="reading", unit="image", disable=None if progress else True)]
    channels = raw[0][0].shape[0]
    for pair, (image, *_) in zip(train + val, raw):
        if image.shape[0] != channels:
            raise UserError(
                f"image has {image.shape[0]} channel(s) but {(train + val)[0].image.name} has {channels}",
                path=pair.image,
                fix="give all images the same channels",
            )
    config = dataclasses.replace(config, in_channels=channels)
    if config.normalization == "auto":  # training resolves it first for pretrained weights; here it is the default
        config = dataclasses.replace(config, normalization="percentile")
    if config.normalization == "imagenet":
        config = dataclasses.replace(config, **imagenet_mean_std(channels))
    if config.normalization == "meanstd":
        config = dataclasses.replace(config, **dataset_mean_std([image for image, *_ in raw[: len(train)]]))
    examples = [Example(p.name, normalize(image, config), classes, objects=objects if i < len(train) else None)
                for i, (p, (image, classes, objects)) in enumerate(zip(train + val, raw))]
    return examples[: len(train)], examples[len(train) :], config


def find_mask_convention(train: list[Pair], config: DataConfig, val: list[Pair] = ()) -> DataConfig:
    """The DataConfig with the convention of the training masks, surveyed together (see `masks.resolve_masks`).

    Validation masks (`val`) are checked against it: a value outside the class table is an error, a
    class of the table that no training mask holds a printed warning (the model cannot learn it).
    """
    config, survey, _ = survey_masks(train, config)
    if val:
        held_out = Survey(count_labels=False)
        for pair in val:
            held_out.add(read_mask(pair.mask, pair.page, palette_colours=config.mask_kind == "colours"), pair.mask)
        for k, path in sorted(classes_only_in(held_out, survey, config).items()):
            warn(f"class {k} is in the validation masks (e.g. {getattr(path, 'name', path)}) but in none of the training "
                 f"masks: the model cannot learn it, and its validation IoU stays 0")
    return config


def survey_masks(pairs: list[Pair], config: DataConfig, keep: bool = False) -> tuple[DataConfig, Survey, list[np.ndarray]]:
    """(the convention of `pairs`' masks, the survey, their raw arrays in order if `keep`), each mask read once.

    Palette PNGs are surveyed last: in a set of colour-coded masks they are
    read as their colours (some tools save a few colour masks with a palette),
    elsewhere as their indices.
    """
    survey, kept, palettes = Survey(), {}, []
    for index, pair in enumerate(pairs):
        if is_palette(pair.mask):
            palettes.append(index)
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
