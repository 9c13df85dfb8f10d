"""Overlap-tile prediction for images of any size, in memory or streamed from disk.

The paper's strategy (Ronneberger et al. 2015, Fig. 2): predict the image tile
by tile and extrapolate the missing context at the image border by mirroring.

- Valid padding (margin m > 0): output tiles abut; each input tile is its
  output tile grown by m on every side, read from the mirror-padded image.
  Tile origins are multiples of 2**depth, so every tile sees the same 2x2
  pooling grid as a whole-image forward pass: the result equals the
  whole-image prediction of the mirror-padded image up to float noise.
  Neighbouring output tiles may overlap by a few pixels (the output tile side
  is rarely a multiple of 2**depth); the overlaps hold identical values and
  are averaged.
- Same padding (m = 0): a zero-padded network sees a different border in
  every tile, so tiles overlap (`overlap`, a fraction of the tile) and are
  blended with Gaussian weights that favour tile centres (as nnU-Net does).
  The image border gets half an overlap of mirrored context, like a seam.

Mirroring is numpy's "symmetric" mode (the edge pixel is repeated: d c b a |
a b c d | d c b a), extended periodically, so it is defined for any pad,
including a 1 x 1 image.

Tiles are produced row by row; `predict_bands` yields finished bands of rows
as soon as no later tile can touch them, so a caller can write the output
incrementally and peak memory is bounded by a band, not the image.
`TiffSource` reads only the region a tile needs from a TIFF (memory-mapped
when the file is uncompressed and contiguous, else through tifffile's zarr
store, which decodes only the tiles or strips that overlap the region).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import _opening, check_pixels

# A function from a batch of normalised tiles (N, C, h, w) float32 to
# class probabilities (N, K, h - 2m, w - 2m) float32.
ProbabilityFn = Callable[[np.ndarray], np.ndarray]

# Activation memory per input pixel of one tile, in float32 values, is
# estimated as (kept skips) + (working set at the top level), with channel
# counts padded to 8 as oneDNN's blocked layouts do; the factor covers
# allocator slack. Calibrated against peak RSS of one forward at 1024^2:
# bytes/px measured (estimate) tiny 278 (312), default 583 (650), residual
# 700 (810), attention 768 (810), paper 1738 (1915).
MEMORY_SAFETY = 1.25
MEMORY_FIXED_MB = 128  # per-forward overhead that does not scale with the tile (scratch, allocator)
MAX_TILE = 1024  # larger tiles gain little and make the rows of a band long


# --------------------------------------------------------------------------- mirroring


def mirror_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices of positions start..stop-1 along an axis of `size` pixels, mirrored ("symmetric").

    Positions outside 0..size-1 reflect about the border with the edge pixel
    repeated, periodically, so any pad width works (size 1 gives all zeros).
    """
    period = 2 * size
    positions = np.mod(np.arange(start, stop), period)
    return np.where(positions < size, positions, period - 1 - positions)


# --------------------------------------------------------------------------- sources


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


def read_tile(source, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The `(C, h, w)` region rows x cols of the mirror-padded image (bounds may lie outside it)."""
    _, height, width = source.shape
    if rows[0] >= 0 and cols[0] >= 0 and rows[1] <= height and cols[1] <= width:
        return source.read(*rows, *cols)
    r = mirror_indices(*rows, height)
    c = mirror_indices(*cols, width)
    box = source.read(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)
    return box[:, r - r.min()][:, :, c - c.min()]


def strided_sample(source, step: int, rows_per_read: int = 1024) -> np.ndarray:
    """`image[:, ::step, ::step]` of a source, read in bands so memory stays small."""
    _, height, width = source.shape
    rows_per_read = max(step, rows_per_read // step * step)
    bands = [source.read(y, min(y + rows_per_read, height), 0, width)[:, ::step, ::step] for y in range(0, height, rows_per_read)]
    return np.concatenate(bands, axis=1)


# --------------------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True)
class Axis:
    """The tiling of one axis: tile k's output covers [origin + k * step, origin + k * step + out).

    `origin` and `step` are multiples of the total stride: every tile sees the pooling
    grid of a whole-image pass. (A U-Net is not shift-invariant; shifting the
    grid by a few pixels changes predictions everywhere, seams or not.)
    """

    size: int  # image pixels along the axis
    tile: int  # input tile side (a valid size for the model)
    out: int  # output tile side = tile - 2 * margin
    step: int
    origin: int  # <= 0: output coordinate where the first tile's output starts
    count: int

    def output_start(self, k: int) -> int:
        return self.origin + k * self.step

    def final_until(self, k: int) -> int:
        """Image rows below this are final once tiles 0..k are done (no later tile reaches them)."""
        if k < 0:
            return 0
        return self.size if k >= self.count - 1 else max(0, min(self.size, self.output_start(k + 1)))


@dataclasses.dataclass(frozen=True)
class Tile:
    row: int
    col: int
    out_y: int  # output box origin in image coordinates (may be negative)
    out_x: int
    in_rows: tuple[int, int]  # input box, image coordinates (may lie outside the image)
    in_cols: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """Where the tiles go for one image and model; `tiles()` in row-major order."""

    rows: Axis
    cols: Axis
    margin: int
    blend: str  # "uniform" (valid padding: overlaps are identical) or "gaussian"

    @property
    def count(self) -> int:
        return self.rows.count * self.cols.count

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows.tile, self.cols.tile

    def tiles(self) -> Iterator[Tile]:
        m = self.margin
        for i in range(self.rows.count):
            for j in range(self.cols.count):
                y, x = self.rows.output_start(i), self.cols.output_start(j)
                yield Tile(i, j, y, x, (y - m, y - m + self.rows.tile), (x - m, x - m + self.cols.tile))

    def final_rows(self, tile: Tile) -> int:
        """Image rows below this are final once `tile` and all tiles before it are done."""
        last_in_row = tile.col == self.cols.count - 1
        return self.rows.final_until(tile.row if last_in_row else tile.row - 1)

    def weights(self) -> np.ndarray:
        """Blending weights of one output tile, (out_h, out_w) float32."""
        if self.blend == "uniform":
            return np.ones((self.rows.out, self.cols.out), np.float32)
        return np.outer(_gaussian(self.rows.out), _gaussian(self.cols.out)).astype(np.float32)


def _gaussian(n: int) -> np.ndarray:
    """1-D Gaussian window, sigma = n / 8 (nnU-Net's choice), floored so no pixel has zero weight."""
    x = np.arange(n) - (n - 1) / 2
    g = np.exp(-(x**2) / (2 * (n / 8) ** 2))
    return np.maximum(g / g.max(), 1e-3)


def make_grid(model, height: int, width: int, tile: int, overlap: float = 0.25) -> TileGrid:
    """The tile grid for an image of `height x width` and a tile of at most `tile` x `tile` input pixels.

    `model` answers the size questions (`margin`, `valid_input_size`,
    `config.depth`, `config.padding`); `tile` must be a valid input size.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    same = model.config.padding == "same"
    rows = _axis_plan(model, height, tile, overlap if same else 0.0, same, axis=0)
    cols = _axis_plan(model, width, tile, overlap if same else 0.0, same, axis=1)
    return TileGrid(rows, cols, model.margin, "gaussian" if same else "uniform")


def _axis_plan(model, size: int, tile: int, overlap: float, same: bool, axis: int) -> Axis:
    margin, align = model.margin, model.config.total_stride

    def valid(n: int) -> int:
        return model.valid_input_size(n, n)[axis]

    if size + 2 * margin <= tile:  # one tile covers the axis: shrink it to the smallest that fits
        small = valid(size + 2 * margin)
        origin = -((small - size) // 2 // align * align) if same else 0  # centred, on the pooling grid
        return Axis(size, small, small - 2 * margin, small - 2 * margin, origin, 1)
    out = tile - 2 * margin
    # Steps are multiples of the total stride so that all tiles share the pooling grid.
    step = max(align, int(out * (1 - overlap)) // align * align)
    context = (out - step) // 2 // align * align if same else 0  # border pixels sit about as deep inside as seams
    count = 1 + math.ceil(max(0, size + 2 * context - out) / step)
    return Axis(size, tile, out, step, -context, count)


# --------------------------------------------------------------------------- tile size and batch


def activation_bytes_per_pixel(config) -> float:
    """Estimated inference activation memory per input pixel of a tile (see MEMORY_SAFETY)."""
    widths = [max(8, -(-config.base_width * 2**level // 8) * 8) for level in range(config.depth + 1)]
    skips = sum(w / 4**level for level, w in enumerate(widths))  # kept for the decoder, at 1/4**level the pixels
    # Top level working set: up-conv out, concat, conv outs (+ norm outs, shortcut, attention map).
    extras = 2 * (config.norm != "none") + 2 * config.residual + 2 * config.attention
    working = (4 + extras) * widths[0]
    body = (skips + working) / config.stem_stride**2  # a strided stem runs the U-Net at 1/4 the pixels
    head = 2 * widths[0] if config.stem_stride > 1 else 0  # its full-size up-conv and norm outputs
    return 4 * MEMORY_SAFETY * (body + head + config.in_channels + config.n_classes)


def choose_tile(model, memory_mb: float, tile_batch: int | None = None, tile_size: int | None = None) -> tuple[int, int]:
    """(tile side, tile batch) for a memory budget of `memory_mb` for one batch of activations.

    The tile is the largest valid size up to MAX_TILE whose batch fits the
    budget (or `tile_size`, rounded up to a valid size); without `tile_batch`,
    the batch then grows to fill the budget, up to 8.
    """
    per_pixel = activation_bytes_per_pixel(model.config)
    budget = max(memory_mb - MEMORY_FIXED_MB, 1) * 2**20
    # The smallest useful tile: its output must span one pooling cell, so steps can stay aligned.
    smallest = model.valid_input_size(2 * model.margin + model.config.total_stride, 1)[0]
    if tile_size is not None:
        tile = model.valid_input_size(max(tile_size, smallest), max(tile_size, smallest))[0]
    else:
        side = int(math.sqrt(budget / ((tile_batch or 1) * per_pixel)))
        tile = _largest_valid_at_most(model, min(side, MAX_TILE)) or smallest
    if tile_batch is None:
        tile_batch = int(max(1, min(8, budget // (tile * tile * per_pixel))))
    return tile, tile_batch


def _largest_valid_at_most(model, side: int) -> int | None:
    """Valid sizes are total_stride apart, so the first valid size above side - total_stride is the answer if <= side."""
    candidate = model.valid_input_size(max(1, side - model.config.total_stride + 1), 1)[0]
    return candidate if candidate <= side else None


# --------------------------------------------------------------------------- prediction in bands


class BandAccumulator:
    """Weighted sums of tile probabilities for the rows not yet handed out."""

    def __init__(self, n_classes: int, height: int, width: int):
        self.n_classes, self.height, self.width = n_classes, height, width
        self.top = 0  # first image row not yet handed out
        self.sums = np.zeros((n_classes, 0, width), np.float32)
        self.weights = np.zeros((0, width), np.float32)

    def add(self, probs: np.ndarray, weights: np.ndarray, y: int, x: int) -> None:
        """Add a (K, h, w) tile whose top-left output pixel is at image (y, x)."""
        h, w = probs.shape[1:]
        y0, y1, x0, x1 = max(y, 0), min(y + h, self.height), max(x, 0), min(x + w, self.width)
        if y0 >= y1 or x0 >= x1:
            return
        if y0 < self.top:
            raise RuntimeError("tile added to rows that were already handed out")
        self._grow(y1)
        probs, weights = probs[:, y0 - y : y1 - y, x0 - x : x1 - x], weights[y0 - y : y1 - y, x0 - x : x1 - x]
        self.sums[:, y0 - self.top : y1 - self.top, x0:x1] += probs * weights
        self.weights[y0 - self.top : y1 - self.top, x0:x1] += weights

    def _grow(self, until: int) -> None:
        extra = until - self.top - self.weights.shape[0]
        if extra > 0:
            self.sums = np.concatenate([self.sums, np.zeros((self.n_classes, extra, self.width), np.float32)], axis=1)
            self.weights = np.concatenate([self.weights, np.zeros((extra, self.width), np.float32)], axis=0)

    def pop(self, until: int) -> tuple[int, np.ndarray] | None:
        """Hand out rows top..until-1 as (top, probabilities (K, rows, W)), or None if there are none."""
        rows = until - self.top
        if rows <= 0:
            return None
        self._grow(until)
        band = self.sums[:, :rows] / self.weights[:rows]
        self.sums, self.weights = self.sums[:, rows:].copy(), self.weights[rows:].copy()
        top, self.top = self.top, until
        return top, band


def predict_bands(
    source,
    grid: TileGrid,
    probability_fn: ProbabilityFn,
    prepare: Callable[[np.ndarray], np.ndarray],
    *,
    n_classes: int,
    batch: int = 1,
    progress=None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, probabilities (K, rows, W)) bands, top to bottom, covering the image.

    `prepare` turns a raw `(C, h, w)` tile into the network input (normalisation);
    `progress`, a tqdm bar or None, advances by one per tile.
    """
    _, height, width = source.shape
    accumulator = BandAccumulator(n_classes, height, width)
    weights = grid.weights()
    tiles = list(grid.tiles())
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        inputs = np.stack([prepare(read_tile(source, t.in_rows, t.in_cols)) for t in chunk])
        for tile, probs in zip(chunk, probability_fn(inputs)):
            accumulator.add(probs, weights, tile.out_y, tile.out_x)
        if progress is not None:
            progress.update(len(chunk))
        band = accumulator.pop(grid.final_rows(chunk[-1]))
        if band is not None:
            yield band
