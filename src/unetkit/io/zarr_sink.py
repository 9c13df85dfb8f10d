"""OME-Zarr outputs (NGFF 0.5, zarr v3) written band by band: never a whole image in memory.

    NAME.ome.zarr/
      zarr.json                       multiscales "NAME_probs": the probabilities image (c, y, x)
      0/ 1/ ...                       float32 levels, each half the size of the one before (2 x 2 means)
      labels/zarr.json                {"labels": ["NAME_labels"]}
      labels/NAME_labels/zarr.json    multiscales + image-label (class colours; source ../../)
      labels/NAME_labels/0/ 1/ ...    class ids (1, y, x), the same levels (every other pixel)

Without probabilities the root holds only `labels/`. Levels halve until one
chunk holds a level. Bands of any heights, top to bottom, are written in
whole chunk rows; the rows of an unfinished chunk row (and one row per level
for the halving) wait as copies. The store is built in a temporary folder
and renamed into place (`atomic_dir`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import atomic_dir

NGFF_VERSION = "0.5"
CHUNK = 256  # chunk side, and the size of the smallest level


def pyramid_shapes(height: int, width: int, smallest: int = CHUNK) -> list[tuple[int, int]]:
    """(h, w) of each level: halved (rounding up) until one `smallest` chunk holds it."""
    shapes = [(height, width)]
    while max(shapes[-1]) > smallest:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


@contextlib.contextmanager
def ome_zarr_writer(path: str | Path, height: int, width: int, *, name: str, labels_dtype, colours, probs_channels: int = 0,
                    spatial: dict | None = None):
    """Yield `write(labels (rows, W), probs (K, rows, W) or None)`: bands top to bottom become the store at `path`.

    `colours`: RGB of each class id (image-label); `probs_channels`: K, or 0
    for no probabilities image; `spatial`: an OME-Zarr input's y/x axes,
    scale and translation (`ZarrSource.spatial`), else pixel units.
    """
    import zarr

    shapes = pyramid_shapes(height, width)
    with atomic_dir(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        label_name = f"{name}_labels"
        root.create_group("labels").attrs["ome"] = {"version": NGFF_VERSION, "labels": [label_name]}
        label_group = root.create_group(f"labels/{label_name}")
        label_group.attrs["ome"] = {"version": NGFF_VERSION, "multiscales": [_multiscale(label_name, shapes, spatial, "nearest")],
                                    "image-label": _image_label(colours)}
        labels = Pyramid(_levels(label_group, shapes, 1, labels_dtype), _every_other)
        probs = None
        root.attrs["ome"] = {"version": NGFF_VERSION}
        if probs_channels:
            root.attrs["ome"] = {"version": NGFF_VERSION, "multiscales": [_multiscale(f"{name}_probs", shapes, spatial, "mean")]}
            probs = Pyramid(_levels(root, shapes, probs_channels, np.float32), _mean_of_four)

        def write(label_rows: np.ndarray, prob_rows: np.ndarray | None = None) -> None:
            labels.add(label_rows[None])
            if probs is not None:
                probs.add(prob_rows)

        yield write
        labels.finish()
        if probs is not None:
            probs.finish()


def _levels(group, shapes, channels: int, dtype) -> list:
    return [group.create_array(str(level), shape=(channels, h, w), chunks=(1, CHUNK, CHUNK), dtype=dtype, fill_value=0,
                               dimension_names=("c", "y", "x")) for level, (h, w) in enumerate(shapes)]


def _multiscale(name: str, shapes, spatial: dict | None, method: str) -> dict:
    """NGFF multiscales: c, y, x axes; each level's scale (the input's pixel size times 2^level) and offset."""
    spatial = spatial or {"axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}], "scale": [1.0, 1.0], "translation": [0.0, 0.0]}
    axes = [{"name": "c", "type": "channel"}] + [{**axis, "name": letter, "type": "space"} for axis, letter in zip(spatial["axes"], "yx")]
    datasets = []
    for level in range(len(shapes)):
        transforms = [{"type": "scale", "scale": [1.0] + [s * 2**level for s in spatial["scale"]]}]
        if any(spatial["translation"]):
            transforms.append({"type": "translation", "translation": [0.0, *spatial["translation"]]})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    downscaling = {"nearest": "every other pixel of each axis", "mean": "the mean of each 2 x 2 block"}[method]
    return {"name": name, "axes": axes, "datasets": datasets, "type": method, "metadata": {"description": f"each level: {downscaling}"}}


def _image_label(colours) -> dict:
    colors = [{"label-value": value, "rgba": [*map(int, rgb), 255]} for value, rgb in enumerate(colours)]
    return {"colors": colors, "source": {"image": "../../"}}


def _every_other(rows: np.ndarray) -> np.ndarray:
    """Nearest-neighbour halving (labels stay class ids): level l holds labels[::2^l, ::2^l]."""
    return rows[:, ::2, ::2]


def _mean_of_four(rows: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block; an odd last row or column is repeated, so its blocks average what is there."""
    _, h, w = rows.shape
    padded = np.pad(rows, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    return padded.reshape(len(rows), (h + 1) // 2, 2, (w + 1) // 2, 2).mean(axis=(2, 4), dtype=np.float32)


class Pyramid:
    """Bands (C, rows, W) of level 0, top to bottom, written to every level of a pyramid of zarr arrays.

    Each level is written in whole chunk rows (`rest`: the rows of the
    unfinished one); level l + 1 is made from pairs of level l's rows
    (`odd`: the row that waits for its pair).
    """

    def __init__(self, arrays: list, halve: Callable[[np.ndarray], np.ndarray]):
        self.arrays, self.halve = arrays, halve
        self.top = [0] * len(arrays)  # next row to write, per level
        self.rest: list[np.ndarray | None] = [None] * len(arrays)
        self.odd: list[np.ndarray | None] = [None] * len(arrays)

    def add(self, band: np.ndarray, level: int = 0) -> None:
        self._write(band, level)
        if level + 1 < len(self.arrays):
            if self.odd[level] is not None:
                band, self.odd[level] = np.concatenate([self.odd[level], band], axis=1), None
            even = band.shape[1] // 2 * 2
            if even < band.shape[1]:
                self.odd[level] = band[:, even:].copy()
            if even:
                self.add(self.halve(band[:, :even]), level + 1)

    def _write(self, band: np.ndarray, level: int) -> None:
        if self.rest[level] is not None:
            band, self.rest[level] = np.concatenate([self.rest[level], band], axis=1), None
        whole = band.shape[1] // CHUNK * CHUNK
        if whole:
            self._put(band[:, :whole], level)
        if whole < band.shape[1]:
            self.rest[level] = band[:, whole:].copy()

    def _put(self, rows: np.ndarray, level: int) -> None:
        top = self.top[level]
        self.arrays[level][:, top : top + rows.shape[1]] = rows
        self.top[level] = top + rows.shape[1]

    def finish(self) -> None:
        """Write what waits: each level's last odd row (halved alone) goes down before that level's last rows go out."""
        for level in range(len(self.arrays)):
            if self.odd[level] is not None:
                odd, self.odd[level] = self.odd[level], None
                self.add(self.halve(odd), level + 1)
            if self.rest[level] is not None:
                self._put(self.rest[level], level)
                self.rest[level] = None
            if self.top[level] != self.arrays[level].shape[1]:
                raise RuntimeError(f"level {level}: {self.top[level]} of {self.arrays[level].shape[1]} rows written")
