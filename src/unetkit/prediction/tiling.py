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

Mirroring follows `data.windows` (numpy's "symmetric" mode, any pad width),
the one convention of patches, validation and prediction.

Tiles are produced row by row; `predict_bands` yields finished bands of rows
as soon as no later tile can touch them, so a caller can write the output
incrementally and peak memory is bounded by a band, not the image; with an
`io.sources.TiffSource` only the region each tile needs is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import numpy as np

from ..data.windows import read_mirrored

# A function from a batch of normalised tiles (N, C, h, w) float32 to
# class probabilities (N, K, h - 2m, w - 2m) float32.
ProbabilityFn = Callable[[np.ndarray], np.ndarray]

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

    def tile_rows_touching(self, top: int, bottom: int) -> range:
        """The tile rows whose outputs reach image rows top..bottom-1 (consecutive: tile rows only move down)."""
        rows = self.rows
        touching = [i for i in range(rows.count) if rows.output_start(i) < bottom and rows.output_start(i) + rows.out > top]
        return range(touching[0], touching[-1] + 1) if touching else range(0)

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


# --------------------------------------------------------------------------- prediction in bands


class BandAccumulator:
    """Weighted sums of tile probabilities for the rows not yet handed out, of image rows `rows` (default: all)."""

    def __init__(self, n_classes: int, height: int, width: int, rows: tuple[int, int] | None = None):
        self.n_classes, self.width = n_classes, width
        self.first, self.bottom = rows or (0, height)  # tiles are cropped to these rows
        self.top = self.first  # first image row not yet handed out
        self.sums = np.zeros((n_classes, 0, width), np.float32)
        self.weights = np.zeros((0, width), np.float32)

    def add(self, probs: np.ndarray, weights: np.ndarray, y: int, x: int) -> None:
        """Add a (K, h, w) tile whose top-left output pixel is at image (y, x)."""
        h, w = probs.shape[1:]
        y0, y1, x0, x1 = max(y, self.first), min(y + h, self.bottom), max(x, 0), min(x + w, self.width)
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
        until = min(until, self.bottom)
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
    rows: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, probabilities (K, rows, W)) bands, top to bottom, covering the image (or image rows `rows`).

    `prepare` turns a raw `(C, h, w)` tile into the network input (normalisation);
    `progress`, a tqdm bar or None, advances by one per tile.
    Rows `rows` come out bit for bit as in a whole-image pass: the tiles that
    reach them run in the same tile batches (a batch's composition may change
    the float ops of a forward pass) and are summed in the same order.
    """
    _, height, width = source.shape
    accumulator = BandAccumulator(n_classes, height, width, rows)
    weights = grid.weights()
    tiles = list(grid.tiles())
    touching = grid.tile_rows_touching(*(rows or (0, height)))
    first, end = touching.start * grid.cols.count, touching.stop * grid.cols.count
    for start in range(first // batch * batch, end, batch):
        chunk = tiles[start : start + batch]
        inputs = np.stack([prepare(read_mirrored(source, t.in_rows, t.in_cols)) for t in chunk])
        for tile, probs in zip(chunk, probability_fn(inputs)):
            accumulator.add(probs, weights, tile.out_y, tile.out_x)
        if progress is not None:
            progress.update(len(chunk))
        band = accumulator.pop(grid.final_rows(chunk[-1]))
        if band is not None:
            yield band
