"""EM-like images with exact ground truth: the embedded default data of the demo and tests.

Cells are a Voronoi tessellation seen through a smooth random warp, so their
walls curve; walls (the membranes) vary in thickness. Interiors get texture and
small dark organelles that are *not* membrane (what makes EM hard: a dark blob
is not a wall); then uneven illumination, blur and noise. Labels follow the
ISBI 2012 convention: 255 = cell interior, 0 = membrane. Everything is a pure
function of the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries

from .io import write_image

CELL_AREA = 45**2  # mean pixels per cell, about ISBI 2012's neurite size at 512 px


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def tessellate(rng: np.random.Generator, shape: tuple[int, int], cell_area: float = CELL_AREA):
    """Cell ids (a warped Voronoi tessellation) and each pixel's distance to the nearest wall."""
    height, width = shape
    n_cells = max(2, rng.poisson(height * width / cell_area))
    seeds = rng.uniform((-8, -8), (height + 8, width + 8), size=(n_cells, 2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    warp = 0.2 * np.sqrt(cell_area)  # walls bend by up to ~a fifth of a cell
    yy += warp * smooth_noise(rng, shape, sigma=np.sqrt(cell_area) / 2)
    xx += warp * smooth_noise(rng, shape, sigma=np.sqrt(cell_area) / 2)
    _, idx = cKDTree(seeds).query(np.stack([yy.ravel(), xx.ravel()], 1))
    cells = idx.reshape(shape)
    walls = find_boundaries(cells, mode="inner")
    return cells, ndimage.distance_transform_edt(~walls), n_cells


def generate(shape: tuple[int, int] = (512, 512), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic EM section: `(image uint8 (H, W), label uint8 (H, W): 255 cell, 0 membrane)`."""
    rng = np.random.default_rng(seed)
    cells, wall_distance, n_cells = tessellate(rng, shape)

    # Membranes: walls whose thickness varies per cell pair and smoothly along the wall.
    thickness = rng.uniform(0.5, 2.5, n_cells)[cells] * (1 + 0.3 * smooth_noise(rng, shape, 6))
    membrane = wall_distance < np.clip(thickness, 0.5, None)
    label = np.where(membrane, 0, 255).astype(np.uint8)

    # Interiors: a grey level per cell with texture; organelles are dark blobs inside cells.
    interior = rng.uniform(0.55, 0.85, n_cells)[cells] + 0.05 * smooth_noise(rng, shape, 1.5)
    organelles = _organelles(rng, shape) & (wall_distance > 4)
    image = np.where(membrane, rng.uniform(0.12, 0.25), interior)
    image = np.where(organelles, 0.3 + 0.1 * rng.random(), image)

    # Microscope: uneven illumination, blur, noise.
    image *= 1 + 0.15 * smooth_noise(rng, shape, max(shape) / 4)
    image = ndimage.gaussian_filter(image, 1.0)
    image += 0.04 * rng.standard_normal(shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), label


def _organelles(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Dark ellipses (mitochondria) and small round vesicles."""
    mask = np.zeros(shape, bool)
    count = rng.poisson(shape[0] * shape[1] / 40**2)
    for _ in range(count):
        big = rng.random() < 0.3
        radii = rng.uniform(6, 14, 2) if big else rng.uniform(1.5, 3, 2)
        rr, cc = ellipse(*rng.uniform(0, shape), *radii, shape=shape, rotation=rng.uniform(0, np.pi))
        mask[rr, cc] = True
    return mask


def write_dataset(folder: str | Path, count: int = 12, shape: tuple[int, int] = (256, 256), seed: int = 0) -> Path:
    """Write `count` sections in the ISBI layout: `folder/images/NN.png`, `folder/labels/NN.png`."""
    folder = Path(folder)
    for i in range(count):
        image, label = generate(shape, seed=seed * 100_003 + i)
        write_image(folder / "images" / f"{i:02d}.png", image)
        write_image(folder / "labels" / f"{i:02d}.png", label)
    return folder
