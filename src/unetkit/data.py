"""From files to tensors: mask conventions, intensity normalisation, pairing, patches.

files -> `pair_files` -> `split_pairs` (by file) -> `load_examples` (read, check,
normalise) -> `PatchDataset` (random patches, a pure function of seed and index).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .config import DataConfig
from .errors import UserError
from .io import count_pages, list_images, read_image, read_mask


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


# --------------------------------------------------------------------------- pairing

# Mask names may carry one of these endings after the image's stem ("01_mask.png").
MASK_STEM_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training image and its mask: two files, or one page of two stacks."""

    image: Path
    mask: Path
    page: int | None = None  # page of a multi-page TIFF stack

    @property
    def name(self) -> str:
        """The stem, with ":page" for a page of a stack (what --val-names takes)."""
        return self.image.stem if self.page is None else f"{self.image.stem}:{self.page}"


def _mask_key(path: Path) -> str:
    stem = path.stem
    for suffix in MASK_STEM_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _shown(paths, limit: int = 5) -> str:
    names = [Path(p).name for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_paired(lonely: dict[str, list], where: str, fix: str) -> None:
    """Raise one UserError listing every group of unpaired files ({"images without a mask": [...], ...})."""
    parts = [f"{what}: {_shown(paths)}" for what, paths in lonely.items() if paths]
    if parts:
        raise UserError("; ".join(parts), path=where, fix=fix)


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> list[Pair]:
    """Pair images with masks by file stem (and page for stacks); unpaired files are an error."""
    images, masks = list_images(images_dir), list_images(masks_dir)
    by_key: dict[str, Path] = {}
    for mask in masks:
        key = _mask_key(mask)
        if key in by_key:
            raise UserError(
                f"two masks for one image: {by_key[key].name} and {mask.name}", path=masks_dir, fix="keep one of them"
            )
        by_key[key] = mask
    lonely_images = [p for p in images if p.stem not in by_key]
    lonely_masks = sorted(set(masks) - {by_key[p.stem] for p in images if p.stem in by_key})
    check_paired(
        {"images without a mask": lonely_images, "masks without an image": lonely_masks},
        f"{images_dir} + {masks_dir}",
        "give each image a mask with the same file stem (e.g. 01.png + 01.png or 01_mask.png), or move the others out",
    )
    pairs = []
    for image in images:
        mask = by_key[image.stem]
        pages, mask_pages = count_pages(image), count_pages(mask)
        if pages != mask_pages:
            raise UserError(
                f"image has {pages} page(s) but its mask {mask.name} has {mask_pages}",
                path=image,
                fix="save one mask page per image page",
            )
        pairs += [Pair(image, mask, None if pages == 1 else page) for page in range(pages)]
    return pairs


def split_pairs(
    pairs: list[Pair],
    *,
    val_fraction: float = 0.2,
    val_names: tuple[str, ...] | None = None,
    folds: int | None = None,
    fold: int = 0,
) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) split by file, never by pixel.

    `val_names` picks stems; `folds`/`fold` holds out one of `folds` contiguous
    blocks in name order; else the last `val_fraction` of the files by name
    (neighbouring sections of a stack are alike: a contiguous block is the
    honest hold-out). Works from 2 pairs; 1 pair trains only with no validation.
    """
    names = [p.name for p in pairs]
    if val_names:
        unknown = [n for n in val_names if n not in names]
        if unknown:
            raise UserError(
                f"--val-names {', '.join(unknown)} match no image", fix=f"use stems of the images: {', '.join(names[:8])} ..."
            )
        held = set(val_names)
    elif folds:
        if folds > len(pairs):
            raise UserError(f"{folds} folds but only {len(pairs)} image(s)", fix=f"use --folds {len(pairs)} or fewer")
        held = {names[i] for i in np.array_split(np.arange(len(pairs)), folds)[fold]}
    elif val_fraction > 0:
        if len(pairs) < 2:
            raise UserError(
                f"only one image ({pairs[0].name}): none is left to validate on",
                path=pairs[0].image,
                fix="add images, or pass --val-fraction 0 to train without validation",
            )
        count = min(max(1, round(val_fraction * len(pairs))), len(pairs) - 1)
        held = set(names[-count:])
    else:
        held = set()
    train = [p for p in pairs if p.name not in held]
    if not train:
        raise UserError("every image is held out for validation", fix="hold out fewer images")
    return train, [p for p in pairs if p.name in held]


# --------------------------------------------------------------------------- loading


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
    if image.shape[1:] != raw.shape:
        raise UserError(
            f"image is {image.shape[1]} x {image.shape[2]} but its mask {pair.mask.name} is {raw.shape[0]} x {raw.shape[1]}",
            path=pair.image,
            fix="give image and mask the same size (re-export the mask)",
        )
    return image, _compact(mask_to_classes(raw, config, path=pair.mask))


def _compact(classes: np.ndarray) -> np.ndarray:
    """Class ids in the smallest dtype that holds them (large masks stay small in memory)."""
    return classes.astype(np.uint8 if classes.min() >= 0 and classes.max() <= 255 else np.int32)


def load_examples(
    train: list[Pair], val: list[Pair], config: DataConfig, *, progress: bool = True
) -> tuple[list[Example], list[Example], DataConfig]:
    """Read and normalise every pair; returns the config resolved from the data.

    `in_channels` comes from the images (all must agree); for "meanstd" the
    per-channel mean and std come from the training images only.
    """
    from tqdm import tqdm

    raw = [read_pair(p, config) for p in tqdm(train + val, desc="reading", unit="image", disable=not progress)]
    channels = raw[0][0].shape[0]
    for pair, (image, _) in zip(train + val, raw):
        if image.shape[0] != channels:
            raise UserError(
                f"image has {image.shape[0]} channel(s) but {(train + val)[0].image.name} has {channels}",
                path=pair.image,
                fix="give all images the same channels",
            )
    config = dataclasses.replace(config, in_channels=channels)
    if config.normalization == "meanstd":
        config = dataclasses.replace(config, **dataset_mean_std([image for image, _ in raw[: len(train)]]))
    examples = [Example(p.name, normalize(image, config), classes) for p, (image, classes) in zip(train + val, raw)]
    return examples[: len(train)], examples[len(train) :], config


def dataset_mean_std(images: list[np.ndarray]) -> dict:
    """Per-channel mean and std over all pixels of all images (float64 sums)."""
    total = sum(np.asarray(im, np.float64).sum(axis=(1, 2)) for im in images)
    squares = sum((np.asarray(im, np.float64) ** 2).sum(axis=(1, 2)) for im in images)
    count = sum(im[0].size for im in images)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    return {"mean": tuple(map(float, mean)), "std": tuple(map(float, std))}


# --------------------------------------------------------------------------- patches


def reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices start..start+length-1 mirrored into 0..size-1 (numpy's "reflect": edge not repeated)."""
    index = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def crop_mirrored(array: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The window [top, top+height) x [left, left+width) of the last two axes, mirrored at the borders.

    The paper's overlap-tile strategy: missing context at an image border is
    the image mirrored, so border pixels are seen as if inside.
    """
    rows, cols = array.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= rows and left + width <= cols:
        return array[..., top : top + height, left : left + width].copy()
    r = reflect_indices(top, height, rows)
    c = reflect_indices(left, width, cols)
    return array[..., r[:, None], c[None, :]]


def grid_windows(examples: list[Example], side: int, count: int) -> list[tuple[int, int, int]]:
    """`count` windows (image index, top, left) of a `side` grid over the images, spread evenly.

    Fixed, un-augmented positions: what prediction sees, and the same on every run and rank.
    """
    windows = [(i, top, left) for i, e in enumerate(examples)
               for top in range(0, max(e.shape[0] - side, 0) + 1, side)
               for left in range(0, max(e.shape[1] - side, 0) + 1, side)]
    picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
    return [windows[k] for k in picks]


class PatchDataset:
    """Random training patches, each a pure function of (seed, sample index).

    Sample `i` belongs to epoch `i // samples_per_epoch`; each epoch visits the
    images in a seeded shuffled order, equally often. A patch is a window of
    side `target + 2 * (margin + slack)` around a target window of side
    `target` lying inside the image (or centred on a foreground pixel, for a
    `fg_oversample` share): `margin` is the valid-padding context, `slack` the
    room the augmentation's warp may read from. Borders are mirrored.
    Items: {"image" (C, S, S) float32, "mask" (S, S) int64, ["weight" (S, S)
    float32,] "seed" int64 for the augmentation}. Because nothing depends on
    what was drawn before, resuming at sample `i` repeats a run exactly.
    """

    FG_POSITIONS = 100_000  # foreground pixels remembered per image for oversampling

    def __init__(
        self,
        examples: list[Example],
        *,
        target: int,
        margin: int = 0,
        slack: int = 0,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        fg_oversample: float = 0.0,
        ignore_index: int | None = None,
    ):
        self.examples, self.target, self.margin, self.slack = examples, target, margin, slack
        self.seed, self.fg_oversample = seed, fg_oversample
        self.samples_per_epoch = samples_per_epoch or self.covering_count(examples, target)
        self._foreground = [self._foreground_positions(e.classes, ignore_index) for e in examples] if fg_oversample else None
        self._order: tuple[int, np.ndarray] | None = None

    @staticmethod
    def covering_count(examples: list[Example], target: int) -> int:
        """Patches needed to cover every training image once."""
        return sum(-(-h // target) * -(-w // target) for h, w in (e.shape for e in examples))

    @property
    def side(self) -> int:
        return self.target + 2 * (self.margin + self.slack)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def image_of(self, index: int) -> int:
        """Which image sample `index` is drawn from (a seeded shuffle per epoch)."""
        epoch, offset = divmod(index, self.samples_per_epoch)
        if self._order is None or self._order[0] != epoch:
            cycle = np.resize(np.arange(len(self.examples)), self.samples_per_epoch)
            self._order = (epoch, np.random.default_rng([self.seed, 0, epoch]).permutation(cycle))
        return int(self._order[1][offset])

    def __getitem__(self, index: int) -> dict:
        import torch

        example = self.examples[self.image_of(index)]
        rng = np.random.default_rng([self.seed, 1, index])
        top, left = self._target_corner(example, rng, self._foreground and self._foreground[self.image_of(index)])
        reach = self.margin + self.slack
        window = (top - reach, left - reach, self.side, self.side)
        item = {
            "image": torch.from_numpy(crop_mirrored(example.image, *window)),
            "mask": torch.from_numpy(crop_mirrored(example.classes, *window).astype(np.int64)),
            "seed": int(rng.integers(2**62)),
        }
        if example.weight is not None:
            item["weight"] = torch.from_numpy(crop_mirrored(example.weight, *window))
        return item

    def _target_corner(self, example: Example, rng: np.random.Generator, foreground) -> tuple[int, int]:
        """Top-left of the target window: uniform inside the image, or around a foreground pixel."""
        corner = []
        centre = None
        if foreground is not None and len(foreground) and rng.random() < self.fg_oversample:
            centre = np.unravel_index(foreground[rng.integers(len(foreground))], example.shape)
        for axis, size in enumerate(example.shape):
            room = size - self.target
            if room < 0:  # image smaller than the patch: centre it, mirror the rest
                corner.append(room // 2)
            elif centre is not None:
                corner.append(int(np.clip(centre[axis] - self.target // 2, 0, room)))
            else:
                corner.append(int(rng.integers(room + 1)))
        return corner[0], corner[1]

    def _foreground_positions(self, classes: np.ndarray, ignore_index: int | None) -> np.ndarray:
        foreground = classes > 0
        if ignore_index is not None:
            foreground &= classes != ignore_index
        flat = np.flatnonzero(foreground)
        if len(flat) > self.FG_POSITIONS:  # a regular subsample keeps memory bounded
            flat = flat[:: -(-len(flat) // self.FG_POSITIONS)]
        return flat
