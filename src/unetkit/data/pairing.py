"""Images paired with masks by file stem (zarr stores by their name without .zarr / .ome.zarr), and the split into training and validation files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from ..config import VAL_SPLITS
from ..errors import UserError
from ..io import count_pages, image_stem, list_images

# Mask names may carry one of these endings after the image's stem ("01_mask.png").
MASK_STEM_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg")


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training image and its mask: two files (or zarr stores), or one page of two stacks."""

    image: Path
    mask: Path
    page: int | None = None  # page of a multi-page TIFF stack

    @property
    def name(self) -> str:
        """The stem, with ":page" for a page of a stack (what --val-names takes)."""
        stem = image_stem(self.image)
        return stem if self.page is None else f"{stem}:{self.page}"


def strip_suffix(stem: str, suffixes: tuple[str, ...] = MASK_STEM_SUFFIXES) -> str:
    """The stem without the first of `suffixes` it ends with (case-insensitive), if anything is left."""
    for suffix in suffixes:
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
    images, masks = list_images(images_dir, stores=True), list_images(masks_dir, stores=True)
    stems = {path: image_stem(path) for path in images}
    by_key: dict[str, Path] = {}
    for mask in masks:
        key = strip_suffix(image_stem(mask))
        if key in by_key:
            raise UserError(
                f"two masks for one image: {by_key[key].name} and {mask.name}", path=masks_dir, fix="keep one of them"
            )
        by_key[key] = mask
    lonely_images = [p for p in images if stems[p] not in by_key]
    lonely_masks = sorted(set(masks) - {by_key[stems[p]] for p in images if stems[p] in by_key})
    check_paired(
        {"images without a mask": lonely_images, "masks without an image": lonely_masks},
        f"{images_dir} + {masks_dir}",
        "give each image a mask with the same file stem (e.g. 01.png + 01.png or 01_mask.png), or move the others out",
    )
    pairs = []
    for image in images:
        mask = by_key[stems[image]]
        pages, mask_pages = count_pages(image), count_pages(mask)
        if pages != mask_pages:
            raise UserError(
                f"image has {pages} page(s) but its mask {mask.name} has {mask_pages}",
                path=image,
                fix="save one mask page per image page",
            )
        pairs += [Pair(image, mask, None if pages == 1 else page) for page in range(pages)]
    return pairs


def group_key(name: str) -> str:
    """The group of a file: its stem without the last run of digits and what follows ("tile3_007" -> "tile3_")."""
    return re.sub(r"\d+\D*$", "", name.split(":")[0])


def name_groups(names: list[str]) -> dict[str, list[str]] | None:
    """Files grouped by `group_key`, when the names form groups (2+ groups, 2+ files each on average); else None."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_key(name), []).append(name)
    return groups if 2 <= len(groups) <= len(names) / 2 else None


def split_pairs(
    pairs: list[Pair],
    *,
    val_fraction: float = 0.2,
    val_names: tuple[str, ...] | None = None,
    folds: int | None = None,
    fold: int = 0,
    split: str = "name",
    seed: int = 0,
) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) split by file, never by pixel.

    `val_names` picks stems; `folds`/`fold` holds out one of `folds` contiguous
    blocks in name order; else `val_fraction` of the files: with `split="name"`
    the last files by name (neighbouring sections of a stack are alike: a
    contiguous block is the honest hold-out), "random" a seeded draw, "group"
    the last whole groups of `name_groups` (tiles of one scene overlap). Works
    from 2 pairs; 1 pair trains only with no validation.
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
        held = _held_out(names, val_fraction, split, seed)
    else:
        held = set()
    train = [p for p in pairs if p.name not in held]
    if not train:
        raise UserError("every image is held out for validation", fix="hold out fewer images")
    return train, [p for p in pairs if p.name in held]


def _held_out(names: list[str], fraction: float, split: str, seed: int) -> set[str]:
    if split not in VAL_SPLITS:
        raise ValueError(f"split={split!r} is not one of {', '.join(VAL_SPLITS)}")
    groups = name_groups(names) if split == "group" else None
    if groups is not None:
        keys = sorted(groups)
        count = min(max(1, round(fraction * len(keys))), len(keys) - 1)
        return {name for key in keys[-count:] for name in groups[key]}
    count = min(max(1, round(fraction * len(names))), len(names) - 1)
    if split == "random":
        return set(np.random.default_rng(seed).choice(names, count, replace=False).tolist())
    return set(names[-count:])  # "name", or "group" where the names form no groups
