"""Training images too large to hold, read window by window from their TIFF or zarr store: memory follows the batch, not the data set.

A `LazyExample` answers what an in-memory `examples.Example` answers (crops of
image, class ids and weight map; class counts; foreground positions; pixels
and class ids for validation) by reading only the region asked for, and gives
the same values bit for bit:
- image: normalised per pixel, with the percentile statistics of the same grid
  sample (`normalize.source_intensity_stats`) or the data set's streamed mean
  and std;
- class ids: per pixel by the data set's convention; instance maps read one
  pixel beyond the region, for the lines where instances touch;
- weight map: computed once, band by band, each band from its rows grown by
  `weightmap.border_reach` px (22 px at sigma 5) and the whole image's objects,
  and kept on disk (`ondisk.weight_map_rows`); patches read their window;
- whole-mask passes (survey, counts, foreground, objects) go band by band.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import UserError
from ..io import image_size, is_tiff, is_zarr, mask_values, open_source
from .instance_maps import MANY_LABELS, MIN_BITS, LabelStats
from .masks import Survey, colour_codes, mask_to_classes
from .normalize import PER_IMAGE, normalize, source_intensity_stats
from .ondisk import weight_map_rows
from .weightmap import class_frequencies
from .windows import band_rows, mirror_indices, read_mirrored

RETILE = ("rewrite it tiled, e.g. python -c \"import tifffile; tifffile.imwrite('OUT.tif', tifffile.imread('IN.tif'), "
          "tile=(256, 256), compression='zlib')\"")


def is_large(pair, above_mpix: float | None) -> bool:
    """Whether a pair's image has more than `above_mpix` megapixels (never, for None)."""
    if above_mpix is None:
        return False
    height, width = image_size(pair.image, pair.page)
    return height * width > above_mpix * 1e6


def reads_lazily(pair, above_mpix: float | None) -> bool:
    """Whether a pair is read window by window: a large image, image and mask each a TIFF or a zarr store (others cannot be)."""
    return all(is_tiff(path) or is_zarr(path) for path in (pair.image, pair.mask)) and is_large(pair, above_mpix)


def layout_warning(path: Path, page: int | None = None) -> str | None:
    """None for a zarr store, a tiled or uncompressed TIFF; a warning for one compressed in strips; an error for one compressed whole."""
    import tifffile

    if is_zarr(path):
        return None

    with tifffile.TiffFile(path) as tif:
        first = tif.series[0].keyframe
        tiled, compressed, rows, height, width = (first.is_tiled, int(first.compression) != 1, first.rowsperstrip,
                                                  first.imagelength, first.imagewidth)
    if tiled or not compressed:
        return None
    if rows >= height:
        raise UserError("TIFF is compressed as one strip: every training patch would decode the whole image", path=path,
                        fix=RETILE)
    return f"{Path(path).name} is compressed in strips of {rows} rows: every patch decodes whole {width}-px rows (slow); {RETILE}"


class ProcessSource:
    """A TiffSource or ZarrSource (`open_source`) opened on first use in each process: DataLoader workers must not share one file handle."""

    def __init__(self, path: Path, page: int | None, mask: bool = False):
        self.path, self.page, self.mask = Path(path), page, mask
        probe = open_source(self.path, page, mask)
        self.shape, self.dtype = probe.shape, probe.dtype
        probe.close()
        self._source, self._pid = None, None

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self._pid != os.getpid():
            self._source, self._pid = open_source(self.path, self.page, self.mask), os.getpid()
        return self._source.read(y0, y1, x0, x1)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_source": None, "_pid": None}


class LazyExample:
    """A training or validation image read window by window from its TIFF or zarr store, never whole (see the module's notes)."""

    objects = None  # `Example.objects`' place: a lazy instance map's objects are read with each band

    def __init__(self, name: str, image: ProcessSource, mask: ProcessSource, config: DataConfig):
        self.name, self.image_source, self.mask_source, self.config = name, image, mask, config
        self.shape = tuple(image.shape[1:])
        self.channels = image.shape[0]
        self.colours = config.mask_kind == "colours" and mask.shape[0] >= 3  # colour-coded masks, as their colours
        self.stats = None  # per-image percentile statistics, once `prepare`d
        self.weights = None  # the weight map on disk (`ondisk.RowFile`), once attached

    @classmethod
    def open(cls, pair, config: DataConfig) -> LazyExample:
        return cls(pair.name, ProcessSource(pair.image, pair.page), ProcessSource(pair.mask, pair.page, mask=True), config)

    def prepare(self, config: DataConfig) -> LazyExample:
        """Take the resolved config; percentile statistics from the grid sample `intensity_stats` takes in memory."""
        self.config = config
        self.stats = source_intensity_stats(self.image_source, config) if config.normalization in PER_IMAGE else None
        return self

    # ----------------------------------------------------------------------- windows

    def image_box(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return normalize(self.image_source.read(y0, y1, x0, x1), self.config, self.stats)

    def image_window(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The normalised window, mirrored beyond the borders (BatchNorm calibration)."""
        return normalize(read_mirrored(self.image_source, (top, top + height), (left, left + width)), self.config, self.stats)

    def raw_mask(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return mask_values(self.mask_source.read(y0, y1, x0, x1), self.mask_source.path, self.colours)

    def mask_box(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """(raw values, class ids int64) of a region; instance maps are read one pixel further, for their touching borders."""
        context = int(self.config.mask_kind == "instances")
        outer = _grown((y0, y1, x0, x1), context, self.shape)
        raw = self.raw_mask(*outer)
        classes = mask_to_classes(raw, self.config, path=self.mask_source.path)
        inner = _inner((y0, y1, x0, x1), outer)
        return raw[inner], classes[inner]

    def crop(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, class ids, weight map or None) of a window, mirrored beyond the borders: `Example.crop`'s values."""
        rows = mirror_indices(top, top + height, self.shape[0])
        cols = mirror_indices(left, left + width, self.shape[1])
        y0, x0 = int(rows.min()), int(cols.min())
        box = (y0, int(rows.max()) + 1, x0, int(cols.max()) + 1)  # the pixels the window shows, read once
        pick = np.ix_(rows - y0, cols - x0)
        classes = self.mask_box(*box)[1]
        weight = None if self.weights is None else self.weights.read(*box)[pick]
        return self.image_box(*box)[:, pick[0], pick[1]], classes[pick], weight

    # ----------------------------------------------------------------------- whole-mask passes

    def class_bands(self):
        """(first row, class ids) of the whole mask, band by band from the top."""
        height, width = self.shape
        rows = band_rows(width)
        for top in range(0, height, rows):
            yield top, self.mask_box(top, min(top + rows, height), 0, width)[1]

    def class_counts(self, n_classes: int, ignore_index: int | None) -> np.ndarray:
        counts = np.zeros(n_classes, np.int64)
        for _, classes in self.class_bands():
            counts += class_frequencies([classes], n_classes, ignore_index)
        return counts

    def foreground(self, ignore_index: int | None, limit: int) -> np.ndarray:
        """Flat positions of the foreground pixels, every k-th of them past `limit`: `Example.foreground`'s, in two passes."""
        total = sum(int(np.count_nonzero(_foreground(c, ignore_index))) for _, c in self.class_bands())
        step = -(-total // limit) if total > limit else 1
        picked, seen = [np.zeros(0, np.int64)], 0
        for top, classes in self.class_bands():
            flat = np.flatnonzero(_foreground(classes, ignore_index)) + top * self.shape[1]
            picked.append(flat[(-seen) % step :: step])
            seen += len(flat)
        return np.concatenate(picked)

    def attach_weights(self, class_weights, *, w0: float, sigma: float, ignore_index: int | None, cache: Path | None = None) -> None:
        """The weight map, computed once band by band and kept in the folder `cache`; patches read their window of it."""
        if cache is None:
            raise ValueError("a lazily read image needs a cache folder for its weight map")
        self.weights = weight_map_rows(self, class_weights, w0=w0, sigma=sigma, ignore_index=ignore_index, folder=cache)

    # ----------------------------------------------------------------------- validation

    def pixels(self):
        """(source, normalised already, percentile statistics) for the predictor's bands."""
        return self.image_source, False, self.stats

    def classes_rows(self, y0: int, y1: int) -> np.ndarray:
        return self.mask_box(y0, y1, 0, self.shape[1])[1]


def _grown(box: tuple[int, int, int, int], by: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = box
    return max(y0 - by, 0), min(y1 + by, shape[0]), max(x0 - by, 0), min(x1 + by, shape[1])


def _inner(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> tuple[slice, slice]:
    return slice(box[0] - outer[0], box[1] - outer[0]), slice(box[2] - outer[2], box[3] - outer[2])


def _foreground(classes: np.ndarray, ignore_index: int | None) -> np.ndarray:
    foreground = classes > 0
    if ignore_index is not None:
        foreground &= classes != ignore_index
    return foreground


# --------------------------------------------------------------------------- the mask survey, band by band


def survey_streamed(survey: Survey, pair, config: DataConfig) -> None:
    """Add a mask to a survey band by band: its values (or colours) exactly as `Survey.add` of the whole mask would.

    Its label statistics lack the object check (an object may span bands), so a
    mask that could be an instance label map is asked about, never guessed.
    """
    source = open_source(pair.mask, pair.page, mask=True)
    try:
        grey, codes, differ = _distinct(source, pair.mask)
    finally:
        source.close()
    if differ:  # colours: the distinct ones as a 1 x n image, which `Survey.add` reads as the whole mask's
        survey.add(np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)[None], pair.mask)
        return
    stats = _label_stats(grey, pair.mask) if survey.count_labels else None
    if stats is not None and _may_be_instances(stats, grey, config):
        raise UserError(f"cannot tell an instance label map from class ids in a mask read in parts ({stats.count} labels)",
                        path=pair.mask, fix="pass --mask-kind instances (one object per id) or --mask-kind ids (one class per value)")
    survey.add_values("grey", grey, pair.mask, stats)


def _distinct(source, path) -> tuple[np.ndarray, np.ndarray, bool]:
    """(distinct grey values, distinct colour codes, whether the channels differ anywhere) of a whole mask."""
    channels, height, width = source.shape
    grey, codes, differ = None, np.zeros(0, np.int64), False
    for top in range(0, height, band_rows(width)):
        pixels = source.read(top, min(top + band_rows(width), height), 0, width)
        values = np.unique(mask_values(pixels, path, colours=False))
        grey = values if grey is None else np.union1d(grey, values)
        if channels > 1 and not differ:
            differ = not all(np.array_equal(pixels[0], c) for c in pixels[1:])
        if differ or (channels in (3, 4) and pixels.dtype == np.uint8):
            codes = np.union1d(codes, np.unique(colour_codes(mask_values(pixels, path, colours=True))))
    return grey, codes, differ


def _label_stats(values: np.ndarray, path) -> LabelStats | None:
    """`instance_maps.label_stats` from the distinct values alone: no object check."""
    if values.dtype.kind not in "iu" or (values.size and values[0] < 0):
        return None
    return LabelStats(path, values.dtype.itemsize * 8, int(np.count_nonzero(values)), int(values[-1]) if values.size else 0, None)


def _may_be_instances(stats: LabelStats, values: np.ndarray, config: DataConfig) -> bool:
    """Whether the in-memory survey would have had to look at the objects to decide."""
    unsure = config.mask_kind == "auto" and config.foreground_value is None and config.n_classes in (None, 2)
    labels = len([v for v in values.tolist() if v != config.ignore_index])
    return unsure and labels > 2 and stats.count >= 2 and (stats.bits >= MIN_BITS or stats.count >= MANY_LABELS)
