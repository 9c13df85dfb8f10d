"""Training and validation images in memory: read, checked, normalised."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from ..io import label_dtype, read_image, read_mask
from .masks import Survey, describe, mask_to_classes, resolve_masks
from .normalize import dataset_mean_std, imagenet_mean_std, normalize
from .pairing import Pair


@dataclasses.dataclass
class Example:
    """One image in memory: normalised (C, H, W) float32, class ids (H, W), optional weight map."""

    name: str
    image: np.ndarray
    classes: np.ndarray
    weight: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.classes.shape


def read_pair(pair: Pair, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The raw image (C, H, W) and its class ids (H, W), checked to match in size."""
    image = read_image(pair.image, pair.page)
    raw = read_mask(pair.mask, pair.page)
    if image.shape[1:] != raw.shape[:2]:
        raise UserError(
            f"image is {image.shape[1]} x {image.shape[2]} but its mask {pair.mask.name} is {raw.shape[0]} x {raw.shape[1]}",
            path=pair.image,
            fix="give image and mask the same size (re-export the mask)",
        )
    return image, _compact(mask_to_classes(raw, config, path=pair.mask))


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

    config = find_mask_convention(train, config)
    if progress:
        tqdm.write(describe(config))
    raw = [read_pair(p, config) for p in tqdm(train + val, desc="reading", unit="image", disable=None if progress else True)]
    channels = raw[0][0].shape[0]
    for pair, (image, _) in zip(train + val, raw):
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
        config = dataclasses.replace(config, **dataset_mean_std([image for image, _ in raw[: len(train)]]))
    examples = [Example(p.name, normalize(image, config), classes) for p, (image, classes) in zip(train + val, raw)]
    return examples[: len(train)], examples[len(train) :], config


def find_mask_convention(train: list[Pair], config: DataConfig) -> DataConfig:
    """The DataConfig with the convention of the training masks, surveyed together (see `masks.resolve_masks`)."""
    survey = Survey()
    for pair in train:
        survey.add(read_mask(pair.mask, pair.page), pair.mask)
    return resolve_masks(survey, config)
