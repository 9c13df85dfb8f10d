"""Tiny image/mask folders for the training tests: bright discs on a dark, noisy background."""

from pathlib import Path

import numpy as np
from skimage.draw import disk

from unetkit.io import write_image


def disc_mask(rng: np.random.Generator, size: int, discs: int = 4) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for _ in range(discs):
        rr, cc = disk(tuple(rng.integers(6, size - 6, 2)), int(rng.integers(4, 9)), shape=mask.shape)
        mask[rr, cc] = 255
    return mask


def make_dataset(root: Path, n: int = 4, size: int = 48, seed: int = 0, suffix: str = ".png") -> tuple[Path, Path]:
    """`root/images` and `root/masks` with `n` pairs named 00, 01, ...; returns both folders."""
    rng = np.random.default_rng(seed)
    images, masks = Path(root) / "images", Path(root) / "masks"
    for i in range(n):
        mask = disc_mask(rng, size)
        image = (40 + 150 * (mask > 0) + rng.normal(0, 20, mask.shape)).clip(0, 255).astype(np.uint8)
        write_image(images / f"{i:02d}{suffix}", image)
        write_image(masks / f"{i:02d}.png", mask)
    return images, masks


# Options for a training run of about a second on a CPU.
TINY = dict(preset="tiny", batch_size=2, patch_size=32, progress=False)
