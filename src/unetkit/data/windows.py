"""Windows of images, mirrored beyond the border: one convention for patches, validation and prediction.

The paper extrapolates the context missing at an image border by mirroring
(Fig. 2); it does not say whether the edge pixel repeats. unetkit uses numpy's
"symmetric" mode (d c b a | a b c d | d c b a), extended periodically, because
it is defined for any pad width and any image, even 1 x 1 (numpy's "reflect",
which skips the edge pixel, has no answer there). Training patches, BatchNorm
calibration, validation and tiled prediction all read windows through
`mirror_indices`, so validation scores the same border that prediction writes.
"""

from __future__ import annotations

import numpy as np

# Pixels per band when a whole image or mask is read in parts (statistics, class counts, objects): ~4 megapixels
# keeps the float64 and label copies of a band near 100 MB however wide the image.
BAND_PIXELS = 1 << 22


def band_rows(width: int) -> int:
    """Rows per band of an image `width` px wide (one band for any image of up to BAND_PIXELS)."""
    return max(1, BAND_PIXELS // width)


def mirror_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices of positions start..stop-1 along an axis of `size` pixels, mirrored ("symmetric").

    Positions outside 0..size-1 reflect about the border with the edge pixel
    repeated, periodically, so any pad width works (size 1 gives all zeros).
    """
    period = 2 * size
    positions = np.mod(np.arange(start, stop), period)
    return np.where(positions < size, positions, period - 1 - positions)


def crop_mirrored(array: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The window [top, top+height) x [left, left+width) of the last two axes, mirrored beyond the borders (a copy)."""
    rows, cols = array.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= rows and left + width <= cols:
        return array[..., top : top + height, left : left + width].copy()
    r = mirror_indices(top, top + height, rows)
    c = mirror_indices(left, left + width, cols)
    return array.take(r, axis=-2).take(c, axis=-1)  # two 1-D gathers: several times faster than one 2-D fancy index


def read_mirrored(source, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The `(C, h, w)` region rows x cols of a source (`io.sources`), mirrored beyond its borders.

    Only the bounding box of the pixels needed is read from the source.
    """
    _, height, width = source.shape
    if rows[0] >= 0 and cols[0] >= 0 and rows[1] <= height and cols[1] <= width:
        return source.read(*rows, *cols)
    r = mirror_indices(*rows, height)
    c = mirror_indices(*cols, width)
    box = source.read(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)
    return box[:, r - r.min()][:, :, c - c.min()]


def center_crop(x, height: int, width: int | None = None):
    """The centre `height x width` of the last two axes (an array or tensor view); the paper's skip crop."""
    width = height if width is None else width
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def grid_windows(shapes: list[tuple[int, int]], side: int, count: int) -> list[tuple[int, int, int]]:
    """`count` windows (image index, top, left) of a `side` grid over images of `shapes`, spread evenly.

    Fixed, un-augmented positions: what prediction sees, and the same on every run and rank.
    """
    windows = [(i, top, left) for i, (height, width) in enumerate(shapes)
               for top in range(0, max(height - side, 0) + 1, side)
               for left in range(0, max(width - side, 0) + 1, side)]
    picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
    return [windows[k] for k in picks]
