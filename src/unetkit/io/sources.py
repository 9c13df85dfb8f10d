"""Image sources read region by region: an in-memory array, or a TIFF never decoded whole.

A source has `shape` (C, H, W), `dtype`, `read(y0, y1, x0, x1)` -> (C, h, w)
and `close()`. `TiffSource` memory-maps raw contiguous TIFFs and otherwise
reads through tifffile's zarr store, which decodes only the tiles or strips a
region overlaps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import _opening, check_pixels, is_zarr
from .zarr_source import ZarrSource


class ArraySource:
    """An in-memory (or memory-mapped) `(C, H, W)` image that tiles are read from."""

    def __init__(self, array: np.ndarray):
        if array.ndim != 3:
            raise ValueError(f"expected a (C, H, W) array, got shape {array.shape}")
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return np.asarray(self.array[:, y0:y1, x0:x1])

    def close(self) -> None:
        pass


class TiffSource:
    """One image of a TIFF file, read region by region, never whole.

    Handles the layouts `io.read_image` does: `YX`, samples (`YXS`, `SYX`),
    channels over pages (`CYX`) and stacks of 2-D pages (pick one with `page`).
    """

    def __init__(self, path: str | Path, page: int | None = None):
        import tifffile

        self.path = Path(path)
        with _opening(self.path):
            self._tif = tifffile.TiffFile(self.path)
            series = self._tif.series[0]
            axes = series.axes.upper()
            sizes = dict(zip(axes, series.shape))
            self._axes = axes
            self._stack_index = self._pick_page(axes, sizes, page)
            kept = [a for a in axes if a in "YXCS"]
            channel = [a for a in kept if a in "CS"]
            self._channel_axis = kept.index(channel[0]) if channel else None
            self.shape = (sizes[channel[0]] if channel else 1, sizes["Y"], sizes["X"])
            self.dtype = np.dtype(series.dtype)
            self._array = self._lazy_array(series)

    def _pick_page(self, axes: str, sizes: dict, page: int | None) -> int | None:
        stack = [a for a in axes if a not in "YXCS"]
        if len(stack) > 1 or "Y" not in axes or "X" not in axes or ("C" in axes and "S" in axes):
            raise UserError(f"cannot stream TIFF axes {axes}", path=self.path, fix="save 2-D images or a stack of 2-D pages")
        if not stack:
            if page not in (None, 0):
                raise UserError(f"page {page} requested but file holds one image", path=self.path, fix="drop the page index")
            return None
        count = sizes[stack[0]]
        page = 0 if page is None and count == 1 else page
        if page is None or not 0 <= page < count:
            raise UserError(f"page {page} not in stack of {count}", path=self.path, fix="use a valid page index")
        return page

    def _lazy_array(self, series):
        """A memory map where the data is stored raw and contiguous, else a zarr array over the segments."""
        import tifffile

        try:
            return tifffile.memmap(self.path, series=0, mode="r")
        except ValueError:  # compressed, tiled, or not contiguous
            import zarr

            return zarr.open(series.aszarr(), mode="r")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        region = {"Y": slice(y0, y1), "X": slice(x0, x1), "C": slice(None), "S": slice(None)}
        index = tuple(region.get(axis, self._stack_index) for axis in self._axes)
        with _opening(self.path):
            box = np.asarray(self._array[index])
        check_pixels(box, self.path)  # read_image's check, tile by tile
        return box[None] if self._channel_axis is None else np.moveaxis(box, self._channel_axis, 0)

    def close(self) -> None:
        self._tif.close()


def open_source(path: Path, page: int | None = None, mask: bool = False):
    """A region reader: a ZarrSource for a zarr store (`mask`: a label image's checks), else a TiffSource."""
    return ZarrSource(path, mask=mask) if is_zarr(path) else TiffSource(path, page)


def strided_sample(source, step: int, rows_per_read: int = 1024) -> np.ndarray:
    """`image[:, ::step, ::step]` of a source, read in bands so memory stays small."""
    _, height, width = source.shape
    rows_per_read = max(step, rows_per_read // step * step)
    bands = [source.read(y, min(y + rows_per_read, height), 0, width)[:, ::step, ::step] for y in range(0, height, rows_per_read)]
    return np.concatenate(bands, axis=1)
